//! Names shared by every part of the operator.

/// Finalizer that guards deletion of the SaladCloud container group.
pub const FINALIZER: &str = "salad-sd.dev/cleanup";
/// Finalizer on the Secret holding a resource's SaladCloud API key, while a container group may
/// exist: the key stays readable until the group is deleted, whatever order Kubernetes deletes
/// things in (a namespace deletion removes the Secret and the resource at once).
pub const API_KEY_FINALIZER: &str = "salad-sd.dev/api-key-in-use";
/// Server-side apply field manager.
pub const FIELD_MANAGER: &str = "salad-sd-operator";
/// Annotation: "true" pauses reconciliation of the resource.
pub const PAUSED_ANNOTATION: &str = "salad-sd.dev/paused";
/// Annotation: per-resource drift poll interval, e.g. `30s`, `5m`.
pub const POLL_INTERVAL_ANNOTATION: &str = "salad-sd.dev/poll-interval";
/// Annotation Flux sets to request a reconcile now.
pub const FLUX_REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
/// Environment variable put in every container group we create; its value is the owning
/// resource's uid. SaladCloud has no labels, and this is how we recognise our own groups.
pub const OWNER_ENV: &str = "SALAD_SD_OWNER_UID";

/// SaladCloud's container group name rule: `^[a-z][a-z0-9-]{0,61}[a-z0-9]$`.
pub fn is_valid_group_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[bytes.len() - 1] != b'-'
}

/// The prefix shared by every container group one incarnation of a resource creates:
/// the resource name (trimmed to fit) and the first 8 hex digits of its uid.
pub fn group_name_prefix(resource_name: &str, uid: &str) -> String {
    let uid_part: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let mut base: String = resource_name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 's');
    }
    // room for "-" + 8 uid chars + "-" + up to 10 generation digits
    base.truncate(63 - 1 - 8 - 1 - 10);
    let base = base.trim_end_matches('-');
    format!("{base}-{uid_part}")
}

/// Deterministic name of the container group created for `generation` of a resource. A new
/// name per generation that needs a new group means a name is never reused, and a crash between
/// create and status write finds the same name again.
pub fn derived_group_name(resource_name: &str, uid: &str, generation: i64) -> String {
    format!(
        "{}-{}",
        group_name_prefix(resource_name, uid),
        generation.max(0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_follow_saladcloud_rules() {
        let uid = "3f2a9c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b";
        for name in [
            "sd",
            "dreamshaper",
            "a-very-long-resource-name-that-goes-on-and-on-and-on-past-sixty-three-chars",
            "9lives",
            "name.with.dots",
        ] {
            let n = derived_group_name(name, uid, 12345);
            assert!(is_valid_group_name(&n), "{n} from {name}");
            assert!(n.contains("3f2a9c1e"), "{n} carries the uid");
        }
    }

    #[test]
    fn each_generation_and_incarnation_gets_its_own_name() {
        let a = derived_group_name("sd", "aaaaaaaa-0000", 1);
        let b = derived_group_name("sd", "aaaaaaaa-0000", 2);
        let c = derived_group_name("sd", "bbbbbbbb-0000", 1);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(b.starts_with(&group_name_prefix("sd", "aaaaaaaa-0000")));
    }

    #[test]
    fn group_name_rule() {
        assert!(is_valid_group_name("ab"));
        assert!(!is_valid_group_name("a"));
        assert!(!is_valid_group_name("1ab"));
        assert!(!is_valid_group_name("ab-"));
        assert!(!is_valid_group_name("aB"));
        assert!(!is_valid_group_name(&"a".repeat(64)));
    }
}
