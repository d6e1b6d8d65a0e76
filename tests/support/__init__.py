"""Helpers shared by the test suites: emulator fixtures' plumbing and builders."""
