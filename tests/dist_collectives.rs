//! The c10d shim (`csrc/dist.cpp`) on Gloo: every collective round-trips between two real
//! processes on loopback with a FileStore, for every dtype fa uses (Debian's Gloo headers are
//! a 2022 snapshot, not the exact version the wheel was built from); failures come back as
//! errors; the launchers' variables are read as documented.
//!
//! The parent tests start this test binary twice, as ranks 0 and 1, running the ignored
//! `rank_worker` test, and check both passed.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fa_torch::dist::launch::{first_host, Launcher};
use fa_torch::dist::{
    Backend, DistError, GroupOptions, Launch, ProcessGroup, Rendezvous, TESTED_KINDS,
};
use tch::{Kind, Tensor};

const RANK: &str = "FA_TEST_DIST_RANK";
/// `file:PATH` or `tcp:PORT` (loopback).
const STORE: &str = "FA_TEST_DIST_STORE";

/// Starts the ignored `rank_worker` test twice, as ranks 0 and 1, with `store` set to
/// the rendezvous each should use, and checks both passed.
fn run_two_ranks(store: &str) {
    let binary = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(&binary)
                .args([
                    "rank_worker",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(RANK, rank.to_string())
                .env(STORE, store)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        let said = format!(
            "--- stdout\n{}\n--- stderr\n{}",
            support::process::stdout(&output),
            support::process::stderr(&output)
        );
        assert!(output.status.success(), "rank {rank} failed\n{said}");
        assert!(
            support::process::stdout(&output).contains("1 passed"),
            "rank {rank} did not run the worker\n{said}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the collectives took too long"
    );
}

#[test]
fn collectives_round_trip_between_two_processes() {
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("store");
    run_two_ranks(&format!("file:{}", file.display()));
}

/// The same over a TCP store served by rank 0 on loopback (torchrun's and SLURM's way).
#[test]
fn collectives_round_trip_over_a_tcp_store() {
    // A port the system just handed out and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    run_two_ranks(&format!("tcp:{port}"));
}

/// One rank of the two-process tests above.
#[test]
#[ignore = "run by collectives_round_trip_between_two_processes as a rank"]
fn rank_worker() {
    let rank: usize = std::env::var(RANK).unwrap().parse().unwrap();
    let world = 2;
    let group = ProcessGroup::new(&GroupOptions {
        backend: Backend::Gloo,
        rendezvous: match std::env::var(STORE).unwrap().split_once(':') {
            Some(("file", path)) => Rendezvous::File(path.into()),
            Some(("tcp", port)) => Rendezvous::Tcp {
                host: "127.0.0.1".into(),
                port: port.parse().unwrap(),
                launcher_serves: false,
            },
            other => panic!("unknown store {other:?}"),
        },
        rank,
        world,
        timeout: Duration::from_secs(60),
        bind: Some("127.0.0.1".into()),
    })
    .expect("the two ranks meet");
    assert_eq!((group.rank(), group.world()), (rank, world));
    let r = rank as f64;

    for kind in TESTED_KINDS {
        let ramp = || Tensor::arange(6, (Kind::Int64, tch::Device::Cpu)).view([2, 3]);
        // All-reduce: rank r holds (r + 1) · ramp, the sum is 3 · ramp.
        let reduced = (ramp() * (r + 1.0)).to_kind(kind);
        group.all_reduce_sum(&reduced).unwrap();
        assert_eq!(
            reduced.to_kind(Kind::Int64),
            ramp() * 3,
            "all-reduce of {kind:?}"
        );

        // Coalesced all-reduce of two tensors of different shapes.
        let a = (ramp() + r as i64).to_kind(kind);
        let b = Tensor::from_slice(&[1i64 + rank as i64, 7]).to_kind(kind);
        group
            .all_reduce_sum_coalesced(&[a.shallow_clone(), b.shallow_clone()])
            .unwrap();
        assert_eq!(a.to_kind(Kind::Int64), ramp() * 2 + 1, "coalesced {kind:?}");
        assert_eq!(
            b.to_kind(Kind::Int64),
            Tensor::from_slice(&[3i64, 14]),
            "coalesced {kind:?}"
        );

        // Broadcast from rank 1: everyone ends with rank 1's ramp + 10.
        let sent = (ramp() + 10 * rank as i64).to_kind(kind);
        group.broadcast(&sent, 1).unwrap();
        assert_eq!(
            sent.to_kind(Kind::Int64),
            ramp() + 10,
            "broadcast of {kind:?}"
        );

        // All-gather: the ranks' rows in rank order.
        let mine = (ramp() + 100 * rank as i64).to_kind(kind);
        let gathered = group.all_gather(&mine).unwrap();
        assert_eq!(gathered.size(), [4, 3], "all-gather shape of {kind:?}");
        assert_eq!(
            gathered.to_kind(Kind::Int64),
            Tensor::cat(&[ramp(), ramp() + 100], 0),
            "all-gather of {kind:?}"
        );
        assert_eq!(gathered.kind(), kind);
    }

    // All-gather with a gradient (the floating kinds): rank r's loss is Σ w_r ⊙ gathered with
    // w_r = (r + 1) · ramp over the 4 gathered rows, so the gradient reaching rank r's own
    // rows is the sum over both ranks' weights of its slice: (1 + 2) · ramp[slice r].
    for kind in [Kind::Float, Kind::Double] {
        let weights = Tensor::arange(8, (kind, tch::Device::Cpu)).view([4, 2]);
        let x = Tensor::full([2, 2], r + 0.5, (kind, tch::Device::Cpu)).set_requires_grad(true);
        let gathered = group.all_gather_autograd(&x).unwrap();
        assert_eq!(gathered.size(), [4, 2]);
        assert_eq!(
            gathered.detach(),
            Tensor::cat(
                &[
                    Tensor::full([2, 2], 0.5, (kind, tch::Device::Cpu)),
                    Tensor::full([2, 2], 1.5, (kind, tch::Device::Cpu))
                ],
                0
            ),
            "gathered values of {kind:?}"
        );
        (gathered * (&weights * (r + 1.0))).sum(kind).backward();
        let expected = weights.narrow(0, 2 * rank as i64, 2) * 3.0;
        assert_eq!(
            x.grad(),
            expected,
            "gradient through the all-gather, {kind:?}"
        );
    }

    // Gradient averaging in buckets: a bucket size that splits the three tensors.
    let parameters: Vec<Tensor> = [3i64, 5, 2]
        .iter()
        .map(|&n| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true))
        .collect();
    for (i, p) in parameters.iter().enumerate() {
        (p * ((i as f64 + 1.0) * (r + 1.0)))
            .sum(Kind::Float)
            .backward();
    }
    group.average_gradients(&parameters, 16).unwrap();
    for (i, p) in parameters.iter().enumerate() {
        let expected = Tensor::full(
            p.size(),
            (i as f64 + 1.0) * 1.5,
            (Kind::Float, tch::Device::Cpu),
        );
        assert_eq!(p.grad(), expected, "averaged gradient {i}");
    }

    assert!(group.any(rank == 1).unwrap(), "one rank's flag reaches all");
    assert!(!group.any(false).unwrap());
    group.barrier().unwrap();
}

#[test]
fn a_missing_peer_is_an_error_after_the_timeout() {
    let folder = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let result = ProcessGroup::new(&GroupOptions {
        backend: Backend::Gloo,
        rendezvous: Rendezvous::File(folder.path().join("store")),
        rank: 0,
        world: 2,
        timeout: Duration::from_millis(1500),
        bind: Some("127.0.0.1".into()),
    });
    let error = result.expect_err("rank 1 never comes");
    assert!(matches!(error, DistError::Rendezvous { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let bad = ProcessGroup::new(&GroupOptions {
        backend: Backend::Gloo,
        rendezvous: Rendezvous::File(folder.path().join("other")),
        rank: 2,
        world: 2,
        timeout: Duration::from_secs(1),
        bind: None,
    });
    assert!(matches!(bad, Err(DistError::BadRank { rank: 2, world: 2 })));
}

fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }
}

#[test]
fn launchers_are_read_from_their_variables() {
    // Alone: no launcher, or a world of one.
    assert_eq!(Launch::from_vars(vars(&[])).unwrap(), None);
    let single = [
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "h"),
        ("MASTER_PORT", "1"),
    ];
    assert_eq!(Launch::from_vars(vars(&single)).unwrap(), None);
    // fa's own variables form a group even of one rank (the GPU check's NCCL smoke test).
    let own = [
        ("FA_RANK", "0"),
        ("FA_WORLD_SIZE", "1"),
        ("FA_RENDEZVOUS_FILE", "/tmp/x"),
    ];
    let one = Launch::from_vars(vars(&own))
        .unwrap()
        .expect("a job of one rank");
    assert_eq!((one.rank, one.world), (0, 1));

    let torchrun = [
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "node7"),
        ("MASTER_PORT", "29400"),
    ];
    let launch = Launch::from_vars(vars(&torchrun)).unwrap().unwrap();
    assert_eq!(launch.launcher, Launcher::Torchrun);
    assert_eq!((launch.rank, launch.world, launch.local_rank), (3, 8, 1));
    assert_eq!(
        launch.rendezvous,
        Rendezvous::Tcp {
            host: "node7".into(),
            port: 29400,
            launcher_serves: false,
        }
    );

    // Under torchrun's agent store every rank is a client of the store the agent serves.
    let mut agent = torchrun.to_vec();
    agent.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
    let launch = Launch::from_vars(vars(&agent)).unwrap().unwrap();
    assert!(matches!(
        launch.rendezvous,
        Rendezvous::Tcp {
            launcher_serves: true,
            ..
        }
    ));

    let slurm = [
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "6"),
        ("SLURM_LOCALID", "2"),
        ("SLURM_STEP_ID", "0"),
        ("SLURM_JOB_NODELIST", "gpu[03-05,09],cpu1"),
    ];
    let launch = Launch::from_vars(vars(&slurm)).unwrap().unwrap();
    assert_eq!(launch.launcher, Launcher::Slurm);
    assert_eq!((launch.rank, launch.world, launch.local_rank), (5, 6, 2));
    assert_eq!(
        launch.rendezvous,
        Rendezvous::Tcp {
            host: "gpu03".into(),
            port: 29500,
            launcher_serves: false,
        }
    );
    // A batch script (no job step) is not a rank.
    assert_eq!(
        Launch::from_vars(vars(
            &slurm[..4]
                .iter()
                .copied()
                .filter(|(k, _)| *k != "SLURM_STEP_ID")
                .collect::<Vec<_>>()
        ))
        .unwrap(),
        None
    );

    assert_eq!(first_host("n1"), Some("n1".into()));
    assert_eq!(first_host("a[7-9]"), Some("a7".into()));
    assert_eq!(first_host(""), None);

    // Bad values name the variable.
    let bad = [
        ("RANK", "x"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
        ("MASTER_PORT", "1"),
    ];
    let error = Launch::from_vars(vars(&bad)).unwrap_err().to_string();
    assert!(error.contains("RANK=\"x\""), "{error}");
    let incomplete = [("RANK", "0"), ("WORLD_SIZE", "2")];
    let error = Launch::from_vars(vars(&incomplete))
        .unwrap_err()
        .to_string();
    assert!(error.contains("MASTER_ADDR"), "{error}");
    let beyond = [
        ("RANK", "2"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "h"),
        ("MASTER_PORT", "1"),
    ];
    assert!(Launch::from_vars(vars(&beyond)).is_err());
}

/// The NCCL backend is compiled in wherever the libtorch fa links is a CUDA build (the
/// wheel's): `./dev` installs the CUDA headers it needs, so CI proves that it builds and
/// links. Running it needs a GPU (`scripts/gpu-check.sh` has a one-rank smoke test).
#[test]
fn nccl_is_built_in_wherever_libtorch_is_a_cuda_build() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libtorch_cpu = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .expect("libtorch_cpu.so is mapped");
    let folder = Path::new(libtorch_cpu).parent().unwrap();
    if folder.join("libtorch_cuda.so").exists() {
        if let Err(why) = fa_torch::dist::nccl_available() {
            panic!("libtorch is a CUDA build but fa lacks NCCL: {why}");
        }
    } else {
        assert!(fa_torch::dist::nccl_available().is_err());
    }
}
