//! Does the requested container fit every GPU class it lists? SaladCloud may allocate any of
//! `resources.gpuClasses`, and each class publishes the vCPU, memory and storage a container on it
//! may request (`min_vcpu` … `max_storage` of the gpu-classes answer). A request outside one
//! class's range is a spec problem: only changing the resources or the class list fixes it.
//!
//! Pure: the caller resolves the classes (with their limits) and passes the request in
//! SaladCloud's units.

use saladcloud::ResolvedGpuClass;

/// Checks `cpu` (vCPU), `memory_mb` (MB, as SaladCloud counts them) and `storage_bytes` (`None`:
/// no storage requested, nothing to check) against the limits of every class in `classes`.
/// A bound a class does not publish is not checked; a class listed twice is checked once.
///
/// The error names each refusing class, its limits and what to change, one problem per field and
/// class, joined by `; `.
pub fn check(
    cpu: u32,
    memory_mb: u32,
    storage_bytes: Option<u64>,
    classes: &[ResolvedGpuClass],
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for class in classes {
        if seen.contains(&class.id.as_str()) {
            continue;
        }
        seen.push(class.id.as_str());
        let checks = [
            Check {
                field: "resources.cpu",
                value: u64::from(cpu),
                min: class.min_vcpu.map(u64::from),
                max: class.max_vcpu.map(u64::from),
                show: vcpu,
            },
            Check {
                field: "resources.memory",
                value: u64::from(memory_mb),
                min: class.min_ram_mb.map(u64::from),
                max: class.max_ram_mb.map(u64::from),
                show: megabytes,
            },
        ];
        let storage = storage_bytes.map(|value| Check {
            field: "resources.storage",
            value,
            min: class.min_storage_bytes,
            max: class.max_storage_bytes,
            show: bytes,
        });
        for c in checks.into_iter().chain(storage) {
            if let Some(problem) = c.problem(&class.name) {
                problems.push(problem);
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// One field of the request against one class's bounds.
struct Check {
    field: &'static str,
    value: u64,
    min: Option<u64>,
    max: Option<u64>,
    /// Renders an amount of this field's unit for a user.
    show: fn(u64) -> String,
}

impl Check {
    fn problem(&self, class: &str) -> Option<String> {
        let show = self.show;
        let fix = match (self.min, self.max) {
            (Some(min), _) if self.value < min => {
                format!("raise {} to at least {}", self.field, show(min))
            }
            (_, Some(max)) if self.value > max => {
                format!("lower {} to at most {}", self.field, show(max))
            }
            _ => return None,
        };
        let allowed = match (self.min, self.max) {
            (Some(min), Some(max)) => range(show(min), show(max)),
            (Some(min), None) => format!("at least {}", show(min)),
            (None, max) => format!("at most {}", show(max?)),
        };
        Some(format!(
            "{} {} is outside what GPU class `{class}` allows ({allowed}): {fix}, or remove `{class}` from resources.gpuClasses",
            self.field,
            show(self.value),
        ))
    }
}

/// `1-16 vCPU` rather than `1 vCPU-16 vCPU` when both ends share a unit word; `1Gi-250Gi`.
fn range(lo: String, hi: String) -> String {
    match lo.split_once(' ') {
        Some((number, unit)) if hi.ends_with(&format!(" {unit}")) => format!("{number}-{hi}"),
        _ => format!("{lo}-{hi}"),
    }
}

fn vcpu(n: u64) -> String {
    format!("{n} vCPU")
}

fn megabytes(n: u64) -> String {
    format!("{n} MB")
}

/// Bytes as a quantity when they are whole GiB (as `resources.storage` is usually written).
fn bytes(n: u64) -> String {
    const GIB: u64 = 1 << 30;
    if n > 0 && n.is_multiple_of(GIB) {
        format!("{}Gi", n / GIB)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// A class named `name` with `(min, max)` vCPU, MB of memory and GiB of storage.
    fn class(
        name: &str,
        vcpu: (u32, u32),
        ram_mb: (u32, u32),
        storage_gib: (u64, u64),
    ) -> ResolvedGpuClass {
        ResolvedGpuClass {
            name: name.to_owned(),
            min_vcpu: Some(vcpu.0),
            max_vcpu: Some(vcpu.1),
            min_ram_mb: Some(ram_mb.0),
            max_ram_mb: Some(ram_mb.1),
            min_storage_bytes: Some(storage_gib.0 * GIB),
            max_storage_bytes: Some(storage_gib.1 * GIB),
            ..ResolvedGpuClass::unlisted(&format!("id-{name}"))
        }
    }

    /// SaladCloud's consumer limits: 1-16 vCPU, 1024-61440 MB, 1Gi-250Gi.
    fn consumer(name: &str) -> ResolvedGpuClass {
        class(name, (1, 16), (1024, 61440), (1, 250))
    }

    /// A larger class: 4-32 vCPU, 8192-122880 MB, 1Gi-500Gi.
    fn large(name: &str) -> ResolvedGpuClass {
        class(name, (4, 32), (8192, 122_880), (1, 500))
    }

    /// A class publishing only a maximum of 8 vCPU.
    fn only_max_vcpu() -> ResolvedGpuClass {
        ResolvedGpuClass {
            name: "Half".to_owned(),
            max_vcpu: Some(8),
            ..ResolvedGpuClass::unlisted("id-half")
        }
    }

    struct Case {
        reason: &'static str,
        cpu: u32,
        memory_mb: u32,
        storage: Option<u64>,
        classes: Vec<ResolvedGpuClass>,
        /// `None`: fits. `Some(parts)`: refused with a message containing every part.
        refused: Option<&'static [&'static str]>,
    }

    #[test]
    fn every_listed_class_must_accept_the_request() {
        let cases = [
            Case {
                reason: "the README's 4 vCPU / 12 GB on an RTX 3060 Ti fits",
                cpu: 4,
                memory_mb: 12288,
                storage: None,
                classes: vec![consumer("RTX 3060 Ti (8 GB)")],
                refused: None,
            },
            Case {
                reason: "the bounds themselves fit",
                cpu: 16,
                memory_mb: 61440,
                storage: Some(250 * GIB),
                classes: vec![consumer("RTX 4090 (24 GB)")],
                refused: None,
            },
            Case {
                reason: "the lower bounds fit too",
                cpu: 1,
                memory_mb: 1024,
                storage: Some(GIB),
                classes: vec![consumer("RTX 4090 (24 GB)")],
                refused: None,
            },
            Case {
                reason: "cpu over the class's maximum names the class, its range and the fix",
                cpu: 32,
                memory_mb: 12288,
                storage: None,
                classes: vec![consumer("RTX 4090 (24 GB)")],
                refused: Some(&[
                    "resources.cpu 32 vCPU is outside what GPU class `RTX 4090 (24 GB)` allows (1-16 vCPU)",
                    "lower resources.cpu to at most 16 vCPU, or remove `RTX 4090 (24 GB)` from resources.gpuClasses",
                ]),
            },
            Case {
                reason: "cpu under the class's minimum asks to raise it",
                cpu: 2,
                memory_mb: 12288,
                storage: None,
                classes: vec![large("RTX 5090 (32 GB)")],
                refused: Some(&[
                    "resources.cpu 2 vCPU is outside what GPU class `RTX 5090 (32 GB)` allows (4-32 vCPU)",
                    "raise resources.cpu to at least 4 vCPU",
                ]),
            },
            Case {
                reason: "memory over the class's maximum",
                cpu: 4,
                memory_mb: 65536,
                storage: None,
                classes: vec![consumer("RTX 3090 (24 GB)")],
                refused: Some(&[
                    "resources.memory 65536 MB is outside what GPU class `RTX 3090 (24 GB)` allows (1024-61440 MB)",
                    "lower resources.memory to at most 61440 MB",
                ]),
            },
            Case {
                reason: "memory under the class's minimum",
                cpu: 4,
                memory_mb: 4096,
                storage: None,
                classes: vec![large("RTX 5090 (32 GB)")],
                refused: Some(&[
                    "resources.memory 4096 MB is outside what GPU class `RTX 5090 (32 GB)` allows (8192-122880 MB)",
                    "raise resources.memory to at least 8192 MB",
                ]),
            },
            Case {
                reason: "storage over the class's maximum, shown as GiB",
                cpu: 4,
                memory_mb: 12288,
                storage: Some(300 * GIB),
                classes: vec![consumer("RTX 3060 (12 GB)")],
                refused: Some(&[
                    "resources.storage 300Gi is outside what GPU class `RTX 3060 (12 GB)` allows (1Gi-250Gi)",
                    "lower resources.storage to at most 250Gi",
                ]),
            },
            Case {
                reason: "storage not requested is not checked",
                cpu: 4,
                memory_mb: 12288,
                storage: None,
                classes: vec![ResolvedGpuClass {
                    min_storage_bytes: Some(100 * GIB),
                    ..consumer("RTX 3060 (12 GB)")
                }],
                refused: None,
            },
            Case {
                reason: "a class without limits (an id not in the list) accepts anything",
                cpu: 1024,
                memory_mb: 1_073_741_824,
                storage: Some(1 << 50),
                classes: vec![ResolvedGpuClass::unlisted(
                    "11111111-2222-3333-4444-555555555555",
                )],
                refused: None,
            },
            Case {
                reason: "a class publishing only a maximum checks only the maximum",
                cpu: 1,
                memory_mb: 1024,
                storage: None,
                classes: vec![only_max_vcpu()],
                refused: None,
            },
            Case {
                reason: "a class publishing only a maximum says `at most`",
                cpu: 12,
                memory_mb: 1024,
                storage: None,
                classes: vec![only_max_vcpu()],
                refused: Some(&["GPU class `Half` allows (at most 8 vCPU)"]),
            },
            Case {
                reason: "several classes where one refuses: the one refusing is named",
                cpu: 24,
                memory_mb: 12288,
                storage: None,
                classes: vec![large("RTX 5090 (32 GB)"), consumer("RTX 4090 (24 GB)")],
                refused: Some(&[
                    "resources.cpu 24 vCPU is outside what GPU class `RTX 4090 (24 GB)` allows (1-16 vCPU)",
                    "remove `RTX 4090 (24 GB)` from resources.gpuClasses",
                ]),
            },
            Case {
                reason: "several classes that all accept",
                cpu: 8,
                memory_mb: 16384,
                storage: Some(50 * GIB),
                classes: vec![large("RTX 5090 (32 GB)"), consumer("RTX 4090 (24 GB)")],
                refused: None,
            },
            Case {
                reason: "every problem is reported, per field and class",
                cpu: 40,
                memory_mb: 131_072,
                storage: None,
                classes: vec![consumer("RTX 4090 (24 GB)"), large("RTX 5090 (32 GB)")],
                refused: Some(&[
                    "resources.cpu 40 vCPU is outside what GPU class `RTX 4090 (24 GB)` allows (1-16 vCPU)",
                    "resources.memory 131072 MB is outside what GPU class `RTX 4090 (24 GB)` allows (1024-61440 MB)",
                    "resources.cpu 40 vCPU is outside what GPU class `RTX 5090 (32 GB)` allows (4-32 vCPU)",
                    "resources.memory 131072 MB is outside what GPU class `RTX 5090 (32 GB)` allows (8192-122880 MB)",
                ]),
            },
        ];
        for case in cases {
            let got = check(case.cpu, case.memory_mb, case.storage, &case.classes);
            match (case.refused, got) {
                (None, Ok(())) => {}
                (None, Err(e)) => panic!("{}: refused: {e}", case.reason),
                (Some(_), Ok(())) => panic!("{}: accepted", case.reason),
                (Some(parts), Err(e)) => {
                    for part in parts {
                        assert!(e.contains(part), "{}: `{e}` lacks `{part}`", case.reason);
                    }
                }
            }
        }
    }

    #[test]
    fn the_message_reads_as_one_sentence_per_problem() {
        let e = check(32, 12288, None, &[consumer("RTX 4090 (24 GB)")]).unwrap_err();
        assert_eq!(
            e,
            "resources.cpu 32 vCPU is outside what GPU class `RTX 4090 (24 GB)` allows (1-16 vCPU): \
             lower resources.cpu to at most 16 vCPU, or remove `RTX 4090 (24 GB)` from resources.gpuClasses"
        );
        let two = check(32, 65536, None, &[consumer("RTX 4090 (24 GB)")]).unwrap_err();
        assert_eq!(
            two.split("; ").count(),
            2,
            "cpu and memory, one problem each: {two}"
        );
    }

    #[test]
    fn a_class_listed_twice_is_reported_once() {
        let class = consumer("RTX 4090 (24 GB)");
        let e = check(32, 12288, None, &[class.clone(), class]).unwrap_err();
        assert_eq!(e.matches("RTX 4090 (24 GB)` allows").count(), 1, "{e}");
    }
}
