//! The `dosod` binary: sets the allocator's policy, parses the command line and hands over to
//! `dosod::cli`.

fn main() -> std::process::ExitCode {
    return_large_buffers_to_the_system();
    dosod::cli::main()
}

/// Frames, tensors and batches are megabytes each. glibc raises its mmap threshold after every
/// such buffer is freed, so later ones come from heap arenas that fragment and are never given
/// back (a 30-minute soak held ~250 MB more, docs/reliability.md). A fixed 1 MiB threshold keeps
/// every large buffer in its own mapping, returned to the system when freed.
fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation policy; it is called before any thread
    // starts. A refusal (return 0) leaves the default policy, which is still correct.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
