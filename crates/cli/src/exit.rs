//! Exit codes of `salad-sd`, shared by every subcommand (documented in each command's help).

/// Success: applied, in sync, deleted.
pub const EXIT_OK: u8 = 0;
/// An error: unreadable file, missing credentials, SaladCloud or registry unreachable, …
pub const EXIT_ERROR: u8 = 1;
/// `diff` found changes.
pub const EXIT_CHANGES: u8 = 2;
/// Stalled: only a change of the spec (or of a Secret, or outside help) can fix it.
pub const EXIT_STALLED: u8 = 3;
/// `--timeout` passed before the goal was reached.
pub const EXIT_TIMEOUT: u8 = 4;

/// The exit code of a command stopped by `failure`: stalled when only a change helps.
pub fn for_failure(failure: &salad_sd_controller::failure::Failure) -> u8 {
    if failure.is_stalled() {
        EXIT_STALLED
    } else {
        EXIT_ERROR
    }
}
