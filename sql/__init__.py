"""SQL sources; a regular package, not a namespace, so editable installs and importlib.resources find the .sql files."""
