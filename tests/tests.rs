//! End-to-end tests: the real `sluice` binary and the real topology against real files, pipes and
//! sockets. One test binary (modules below) keeps linking time down.
#![allow(missing_docs)]

mod support;

mod cli;
mod examples;
mod run;
mod topology;
