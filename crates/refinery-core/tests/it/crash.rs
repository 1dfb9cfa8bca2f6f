//! The crash harness: writers killed with SIGKILL at random instants, hundreds of times.
//!
//! The writers are this test binary run again with [`CHILD_ENV`] set: `crash_writer` then
//! performs every kind of write call on a state folder in a loop until it is killed. After
//! each kill the parent opens every session through the public API and checks that the
//! state agrees with the journal (by the store's own rebuild *and* by an independent count of
//! the journal's records), that every pack under its final name is complete and every object
//! in it hashes right, and that every manifest's objects exist, hash correctly and restore
//! byte-identical (small objects are packed, so kills land while packs are written; one call
//! in the mix is a sweep with no grace, so they also land while packs are deleted or
//! rewritten under concurrent writers). Delays come from a seeded generator, so a failing seed can be replayed
//! (`REFINERY_CRASH_SEED`); where the kill lands within the writer still depends on the
//! scheduler, which is the point.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use refinery_core::{
    CriteriaSet, Error, RestoreMode, Session, SessionSettings, SessionState, StateDir,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const CHILD_ENV: &str = "REFINERY_CRASH_CHILD";
const SEED_ENV: &str = "REFINERY_CRASH_SEED";

/// splitmix64: small, seeded, good enough to spread kill instants and choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn store(dir: &Path) -> StateDir {
    StateDir::new(dir.join("state"), dir.join("ws"))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Not a test of its own: the body of a killed writer, run only when the parent sets
/// [`CHILD_ENV`]. In a normal test run it returns at once.
#[test]
fn crash_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(1);
    let dir = PathBuf::from(dir);
    let store = store(&dir);
    let mut rng = Rng(seed);
    let mut counter = 0_u64;
    loop {
        counter += 1;
        match one_write(&store, &dir, &mut rng, counter) {
            // Refusals (no answer for the round, a plan without an iterate verdict, …) are
            // what a concurrent writer's move can cause; damage and I/O errors are not.
            Ok(()) | Err(Error::NoAnswerForRound { .. } | Error::Plan(_)) => {}
            Err(err) => panic!("writer failed: {err}"),
        }
    }
}

fn criteria(count: usize) -> CriteriaSet {
    let items: Vec<Value> = (1..=count)
        .map(|n| json!({"id": format!("E{n}"), "text": format!("criterion {n}")}))
        .collect();
    CriteriaSet::from_json(&Value::Array(items)).unwrap()
}

/// One write call chosen from the session's state, so a long run visits every kind.
fn one_write(
    store: &StateDir,
    dir: &Path,
    rng: &mut Rng,
    counter: u64,
) -> refinery_core::Result<()> {
    let id = store.current_session_id()?;
    let session = store.session(id);
    if !session.dir().join("events.jsonl").exists() || rng.below(60) == 0 {
        store.init_session("crash", SessionSettings::default(), now())?;
        return Ok(());
    }
    let state = session.state()?;
    if session.criteria()?.is_none() {
        session.register_criteria(&criteria(2 + rng.below(2) as usize), now())?;
        return Ok(());
    }
    match rng.below(100) {
        0..=7 => {
            session.vote("answer1", "the better one", now())?;
        }
        8..=11 => {
            session.reset_evaluation(now())?;
        }
        12..=15 => {
            session.register_criteria(&criteria(2 + rng.below(2) as usize), now())?;
        }
        // `refinery session gc` with no grace: deletes and rewrites packs while the other
        // writers snapshot (it does nothing while one holds the store).
        16..=18 => {
            store
                .objects()
                .sweep(&[store.root().to_path_buf()], Duration::ZERO)?;
        }
        _ => progress(&session, &state, dir, rng, counter)?,
    }
    Ok(())
}

/// The next step of the loop: an answer, a plan, or a score.
fn progress(
    session: &Session,
    state: &SessionState,
    dir: &Path,
    rng: &mut Rng,
    counter: u64,
) -> refinery_core::Result<()> {
    let round = state.round + 1;
    let answered = state
        .pending_answer
        .is_some_and(|answer| answer.round == round);
    if let Some(last) = &state.last_result
        && state.plan.is_none()
        && !last.failed_criteria.is_empty()
        && rng.below(2) == 0
    {
        let improvements: serde_json::Map<String, Value> = last
            .failed_criteria
            .iter()
            .map(|id| (id.clone(), json!([{"plan": "p", "impact": "structural"}])))
            .collect();
        session.propose_improvements(&Value::Object(improvements), None, None, now())?;
        return Ok(());
    }
    if !answered || rng.below(6) == 0 {
        let workspace = dir.join("ws");
        fs_err::write(workspace.join("answer.txt"), format!("answer {counter}\n"))?;
        // Now and then many new small objects at once: a longer pack write for a kill to hit.
        if rng.below(3) == 0 {
            fs_err::create_dir_all(workspace.join("bulk"))?;
            for file in 0..24 {
                fs_err::write(
                    workspace.join("bulk").join(format!("page_{file}.html")),
                    format!("<p>{counter} {file}</p>\n").repeat(1 + file * 200),
                )?;
            }
        }
        fs_err::write(
            workspace.join(format!("part_{}.txt", counter % 3)),
            counter.to_string().repeat(1 + (counter % 50) as usize),
        )?;
        session.new_answer("an answer", &[".".to_owned()], now())?;
        return Ok(());
    }
    if rng.below(5) == 0 {
        session.record_unscored_round("the evaluator's reply was unusable", now())?;
        return Ok(());
    }
    let ids = session.criteria()?.map(|set| set.ids()).unwrap_or_default();
    let scores: serde_json::Map<String, Value> = ids
        .into_iter()
        .map(|id| (id, json!(rng.below(11))))
        .collect();
    session.submit_checklist(&Value::Object(scores), None, now())?;
    Ok(())
}

fn spawn_writer(dir: &Path, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(SEED_ENV, seed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// How long after the writers start a kill may come, beyond the first 5 ms.
const KILL_WINDOW_MICROS: u64 = 60_000;

/// Rounds scored in all the sessions under `root`.
fn scored_rounds(root: &Path) -> usize {
    store(root)
        .list_sessions()
        .unwrap()
        .iter()
        .map(|session| session.history().unwrap().len())
        .sum()
}

/// Kills `writers` at one random instant, then checks everything on disk. Returns whether a
/// kill landed while a pack was being written (its temporary file is left).
fn kill_and_check(
    dir: &Path,
    rng: &mut Rng,
    writers: usize,
    restore_to: &Path,
    window_micros: u64,
) -> bool {
    let children: Vec<Child> = (0..writers)
        .map(|_| spawn_writer(dir, rng.next()))
        .collect();
    // The random instant: anywhere from before the writer's first call to well into a run.
    std::thread::sleep(Duration::from_micros(5_000 + rng.below(window_micros)));
    for mut child in children {
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.code().is_none(),
            "a writer stopped on its own before it was killed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    check(dir, restore_to)
}

/// What the journal says the state must be, counted independently of the store's own fold.
fn check_against_journal(session: &Session, state: &SessionState) {
    let events = session.events().unwrap();
    let op = |event: &Value| event["op"].as_str().unwrap_or_default().to_owned();
    let since_reset: Vec<&Value> = events
        .iter()
        .rev()
        .take_while(|event| op(event) != "reset_evaluation")
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let closes =
        |event: &Value| matches!(op(event).as_str(), "submit_checklist" | "unscored_round");
    let context = || format!("{} with journal {events:#?}", session.dir().display());
    assert_eq!(
        state.round as usize,
        since_reset.iter().filter(|event| closes(event)).count(),
        "round in {}",
        context()
    );
    assert_eq!(
        state.rounds_counted() as usize,
        events.iter().filter(|event| closes(event)).count(),
        "rounds used in {}",
        context()
    );
    let revisions = events
        .iter()
        .filter(|event| op(event) == "generate_eval_criteria")
        .count();
    assert_eq!(state.criteria_revision as usize, revisions, "{}", context());
    let last_answer = since_reset
        .iter()
        .rev()
        .find(|event| op(event) == "new_answer")
        .map(|event| {
            (
                event["round"].as_u64().unwrap(),
                event["revision"].as_u64().unwrap(),
            )
        });
    assert_eq!(
        state
            .pending_answer
            .map(|answer| (u64::from(answer.round), u64::from(answer.revision))),
        last_answer,
        "pending answer in {}",
        context()
    );
    // An unscored round keeps the last result; new criteria and a reset drop it.
    let last_decision = events.iter().rev().find(|event| {
        matches!(
            op(event).as_str(),
            "submit_checklist" | "generate_eval_criteria" | "reset_evaluation"
        )
    });
    let last_score = last_decision.filter(|event| op(event) == "submit_checklist");
    assert_eq!(
        state
            .last_result
            .as_ref()
            .map(|result| u64::from(result.round)),
        last_score.map(|event| event["round"].as_u64().unwrap()),
        "last result in {}",
        context()
    );
    let planned = events
        .iter()
        .rev()
        .find(|event| {
            matches!(
                op(event).as_str(),
                "propose_improvements"
                    | "submit_checklist"
                    | "unscored_round"
                    | "generate_eval_criteria"
                    | "reset_evaluation"
            )
        })
        .is_some_and(|event| op(event) == "propose_improvements");
    assert_eq!(state.plan.is_some(), planned, "plan in {}", context());
    let criteria_ids = events
        .iter()
        .rev()
        .find(|event| op(event) == "generate_eval_criteria")
        .map(|event| event["criteria_ids"].clone());
    assert_eq!(
        session
            .criteria()
            .unwrap()
            .map(|criteria| json!(criteria.ids())),
        criteria_ids,
        "criteria in {}",
        context()
    );
}

/// Every pack under its final name is complete and every object in it hashes right; every
/// session opens, its state agrees with its journal, and every manifest restores
/// byte-identical.
fn check(dir: &Path, restore_to: &Path) -> bool {
    let store = store(dir);
    store.objects().verify_packs().unwrap();
    let packs = store.objects().dir().join("packs");
    // A pack's temporary file is what a kill during its write leaves; removed here (as a
    // sweep would) so the next kill's count is its own.
    let mut interrupted_pack = false;
    for entry in fs_err::read_dir(&packs).into_iter().flatten().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".incoming-")
        {
            fs_err::remove_file(entry.path()).unwrap();
            interrupted_pack = true;
        }
    }
    for session in store.list_sessions().unwrap() {
        let state = session.state().unwrap();
        assert_eq!(
            session.state_from_journal().unwrap(),
            state,
            "the cache and the journal disagree in {}",
            session.dir().display()
        );
        check_against_journal(&session, &state);
        for (round, submission) in session.submissions().unwrap() {
            let dest = restore_to.join(format!("{}-{round}", session.id().as_str()));
            session
                .restore_round(round, &dest, RestoreMode::IntoEmpty)
                .unwrap();
            for entry in &submission.files {
                let bytes = fs_err::read(dest.join(&entry.path)).unwrap();
                assert_eq!(
                    hex::encode(Sha256::digest(&bytes)),
                    entry.hash,
                    "{}",
                    entry.path
                );
                assert_eq!(bytes.len() as u64, entry.size);
            }
            fs_err::remove_dir_all(&dest).unwrap();
        }
    }
    interrupted_pack
}

/// Where the harness keeps its state folder.
#[derive(Clone, Copy)]
enum Disk {
    Ordinary,
    Memory,
}

/// Runs `rounds` kills; returns how many landed while a pack was being written.
fn run_harness(rounds: usize, writers: usize, disk: Disk, seed: u64) -> usize {
    // On the ordinary disk the syncs take real time, as they do for users, so kills land
    // inside them as often as they would in life. On a memory filesystem syncs are free and a
    // writer gets through ten times more calls before its kill: more kinds of call, more
    // interleavings of concurrent writers. A SIGKILL loses nothing that reached the kernel
    // either way.
    let shm = Path::new("/dev/shm");
    let dir = match disk {
        Disk::Memory if shm.is_dir() => tempfile::tempdir_in(shm).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    };
    let root = fs_err::canonicalize(dir.path()).unwrap();
    fs_err::create_dir_all(root.join("ws")).unwrap();
    let restore_to = root.join("restored");
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(seed);
    let mut rng = Rng(seed);
    let mut in_pack_writes = 0;
    for _ in 0..rounds {
        in_pack_writes += usize::from(kill_and_check(
            &root,
            &mut rng,
            writers,
            &restore_to,
            KILL_WINDOW_MICROS,
        ));
    }
    // On a loaded machine writers may start too slowly for any to score a round inside the
    // usual window: a few more kills, later, so the harness still sees scored rounds (each
    // kill is checked like the others).
    let mut extra = 0;
    while scored_rounds(&root) == 0 && extra < rounds {
        extra += 1;
        in_pack_writes += usize::from(kill_and_check(
            &root,
            &mut rng,
            writers,
            &restore_to,
            10 * KILL_WINDOW_MICROS,
        ));
    }

    // The writers got somewhere: sessions with scored rounds exist.
    let store = store(&root);
    let sessions = store.list_sessions().unwrap();
    let records: usize = sessions
        .iter()
        .map(|session| session.events().unwrap().len())
        .sum();
    let scored = scored_rounds(&root);
    assert!(
        scored > 0,
        "no writer ever scored a round in {rounds} kills and {extra} later ones of {writers} writer(s) (seed {seed}): {} sessions, {records} records",
        sessions.len()
    );
    in_pack_writes
}

#[test]
fn a_writer_killed_at_random_instants_never_leaves_state_and_journal_apart() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let in_pack_writes = run_harness(80, 1, Disk::Ordinary, 0x5EED_0001)
        + run_harness(100, 1, Disk::Memory, 0x5EED_0002);
    assert!(
        in_pack_writes > 0,
        "no kill landed while a pack was being written"
    );
}

#[test]
fn concurrent_writers_killed_at_random_instants_never_leave_state_and_journal_apart() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let in_pack_writes = run_harness(30, 3, Disk::Ordinary, 0x5EED_0003)
        + run_harness(40, 3, Disk::Memory, 0x5EED_0004);
    assert!(
        in_pack_writes > 0,
        "no kill landed while a pack was being written"
    );
}
