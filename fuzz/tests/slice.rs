//! The fixed-seed slice that `make test` runs: 50,000 frames through the whole request
//! path, under the same allocator cap as `make fuzz`.

use runnel_fuzz::corpus::{self, api_name};
use runnel_fuzz::harness::default_data_root;
use runnel_fuzz::worker::{self, WorkerArgs};

/// 1 GiB for the whole test process: a decode that reserves from a hostile count fails
/// its allocation and aborts the test instead of passing on a large machine.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 1 << 30);

const FRAMES: u64 = 50_000;
const EPOCH: u64 = 10_000;

#[test]
fn a_fixed_seed_slice_handles_every_frame_and_the_broker_still_answers() {
    let corpus = corpus::load(&corpus::default_dir()).expect("the corpus loads");
    std::fs::create_dir_all(default_data_root()).expect("data root");
    let root = tempfile::tempdir_in(default_data_root()).expect("temp dir");
    let args = WorkerArgs {
        seed: 20_261_206,
        start: 0,
        end: FRAMES,
        time_limit: None,
        reset_every: EPOCH,
        data_root: root.path().to_path_buf(),
        trace: false,
    };
    let mut out = Vec::new();
    // Ok means: no answer broke the protocol, and ApiVersions was answered after the last frame.
    let report = worker::run(&args, &corpus, &mut out).expect("the slice runs clean");
    assert_eq!(report.next, FRAMES);
    assert_eq!(report.stats.frames(), FRAMES, "{:?}", report.stats);

    let out = String::from_utf8(out).expect("utf-8");
    let checkpoints: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("checkpoint"))
        .collect();
    assert_eq!(
        checkpoints,
        [
            "checkpoint 0",
            "checkpoint 10000",
            "checkpoint 20000",
            "checkpoint 30000",
            "checkpoint 40000"
        ]
    );

    // Every API of the corpus was reached, answered at least once and refused at least once.
    for frame in &corpus {
        let name = api_name(frame.key);
        let counts = report.stats.per_api.get(&name).copied().unwrap_or_default();
        assert!(counts.answered > 0, "{name} was never answered: {counts:?}");
        assert!(counts.closed > 0, "{name} was never refused: {counts:?}");
    }
    // The frames were mutated: some keys are not served at all.
    assert!(report
        .stats
        .per_api
        .get("unserved")
        .is_some_and(|c| c.answered > 0));
}
