//! The first Ctrl-C only raises the flag the training loop polls.

#[cfg(unix)]
#[test]
fn first_sigint_sets_the_flag_without_killing_the_process() {
    use std::sync::atomic::Ordering;
    let flag = attempt_pkg::train::interrupt::ctrl_c_flag();
    assert!(!flag.load(Ordering::SeqCst));
    // SAFETY: raising a signal this process handles.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    assert!(flag.load(Ordering::SeqCst), "SIGINT did not set the flag");
    // Asking again re-arms the same flag.
    let again = attempt_pkg::train::interrupt::ctrl_c_flag();
    assert!(!again.load(Ordering::SeqCst));
}
