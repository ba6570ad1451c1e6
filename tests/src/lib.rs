//! End-to-end tests across crates: the engine with the simulator and a real registry
//! (`tests/`), a test node that runs the built images (`node`), and a mocked Kubernetes API
//! server for the operator run as a process (`kubeapi`).

pub mod kubeapi;
pub mod node;
