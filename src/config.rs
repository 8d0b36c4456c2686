//! Configuration: defaults < parley.toml < environment.
