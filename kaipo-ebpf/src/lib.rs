#![no_std]
// The library target lets the userspace crate list this one as a build-dependency, so cargo
// rebuilds the userspace binary when the programs change.
