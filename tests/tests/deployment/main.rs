//! Deployment files checked without Greengrass, gdk or Docker: the component recipes under
//! `recipes/`, their `gdk-config.json`, what `cargo xtask dist` declares it builds, and
//! `docker/Dockerfile`.
//!
//! The command lines are checked as the nucleus would run them: every recipe variable is
//! substituted (configuration values from `DefaultConfiguration`, optionally merged with
//! overrides the way a deployment merges configuration), the Install and Run scripts run under a
//! real `sh` with the binary replaced by a stub that prints its arguments, and those arguments are
//! parsed by the binary's own clap type (`try_parse_from`) — then compared with the
//! configuration values, so a flag wired to the wrong setting fails too.
//!
//! One test binary, one module per concern:
//! * [`support`] — reading recipes, Cargo manifests and the dist task's declarations;
//! * [`lifecycle`] — recipe variable substitution and running Install/Run under `sh` with stub
//!   binaries;
//! * [`recipes`] — identity, versions, gdk configuration, dependencies, configuration keys;
//! * [`access_control`] — pub/sub grants and where the adapter finds the service;
//! * [`command_lines`] — each component's command line parsed by its binary's clap type;
//! * [`artifacts`] — recipe artifacts versus what `cargo xtask dist` builds and lays out;
//! * [`docker`] — the Dockerfile and its ignore file.

mod access_control;
mod artifacts;
mod command_lines;
mod docker;
mod lifecycle;
mod recipes;
mod support;
mod variant_dlr;
