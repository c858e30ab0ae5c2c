# cnnlab's configs ship inside the package as `cnnlab.conf` (see pyproject.toml); this file makes the folder a package.
