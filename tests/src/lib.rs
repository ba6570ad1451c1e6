//! End-to-end tests across crates: the engine with the simulator and a real registry
//! (`tests/`), and a test node that runs the built images (`node`).

pub mod node;
