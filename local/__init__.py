"""The local stack: emulators and runners that let modeldrop's real code run on one machine."""
