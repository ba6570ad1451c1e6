//! Prints the CRD YAML (the same text as `salad-sd crd`), without building the whole binary.
fn main() {
    print!("{}", salad_sd_api::crd_yaml());
}
