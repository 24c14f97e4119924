//! `memgpt batch` against `memgpt serve` on SQuAD questions with their paragraphs remembered:
//! bad lines become error records; a client killed with SIGKILL at about half and rerun
//! leaves exactly one line per id; shards split the ids and merge back; --retry-failed asks
//! the failed ones again. (The 1,000-question run is `scripts/bench/batch.sh`.)

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use super::common::{data, memgpt, ok, records, run, Serve};

/// The first `n` SQuAD questions as batch lines, and their paragraphs as JSONL documents.
fn squad(n: usize, dir: &Path) -> Vec<String> {
    let mut text = String::new();
    let file = std::fs::File::open(data("squad/dev-v1.1-articles-00-23.json.gz")).unwrap();
    flate2_read(file).read_to_string(&mut text).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (mut lines, mut docs) = (Vec::new(), String::new());
    'outer: for (a, article) in v["data"].as_array().unwrap().iter().enumerate() {
        for (p, para) in article["paragraphs"].as_array().unwrap().iter().enumerate() {
            docs.push_str(&serde_json::json!({"id": format!("a{a}-p{p}"), "text": para["context"]}).to_string());
            docs.push('\n');
            for qa in para["qas"].as_array().unwrap() {
                if lines.len() == n {
                    break 'outer;
                }
                lines.push(serde_json::json!({"id": qa["id"], "question": qa["question"], "options": {"top_k": 2, "max_new_tokens": 8}}).to_string());
            }
        }
    }
    std::fs::write(dir.join("paragraphs.jsonl"), docs).unwrap();
    lines
}

fn flate2_read(file: std::fs::File) -> impl Read {
    // The test reads the gzip through the system's gzip, keeping the test crate's dependencies
    // to the command's own.
    let mut child = std::process::Command::new("gzip").arg("-dc").stdin(file).stdout(std::process::Stdio::piped()).spawn().expect("gzip runs");
    child.stdout.take().unwrap()
}

fn ids(path: &Path) -> Vec<String> {
    records(path).iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn batch_survives_kill_9_shards_merge_and_bad_lines_become_records() {
    let serve = Serve::start(&[]);
    let addr = Some(serve.addr.as_str());
    let dir = tempfile::tempdir().unwrap();
    let mut lines = squad(24, dir.path());
    ok({
        let mut c = memgpt(addr, &["remember"]);
        c.arg(dir.path().join("paragraphs.jsonl"));
        c
    });
    let bad = [
        (4, "{this is not json".to_string(), "line:5"),
        (9, serde_json::json!({"id": "no-question"}).to_string(), "no-question"),
        (13, serde_json::json!({"id": "too-long", "question": "why? ".repeat(4000)}).to_string(), "too-long"),
        (17, serde_json::json!({"id": "bad-ns", "question": "q", "namespace": 5}).to_string(), "bad-ns"),
        (20, serde_json::json!({"id": "bad-option", "question": "q", "options": {"top_k": "many"}}).to_string(), "bad-option"),
    ];
    for (at, line, _) in &bad {
        lines.insert(*at, line.clone());
    }
    lines.push(lines[0].clone()); // a duplicate id: asked once
    let input = dir.path().join("questions.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output = dir.path().join("answers.jsonl");
    let expected: BTreeSet<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["id"].as_str().map(String::from)).unwrap_or(format!("line:{}", i + 1)))
        .collect();

    // Kill the client at about half, then rerun.
    let mut child = memgpt(addr, &["batch", "--concurrency", "4", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]).spawn().unwrap();
    let half = expected.len() / 2;
    while std::fs::read_to_string(&output).map(|t| t.lines().count()).unwrap_or(0) < half {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("batch ended early: {status}");
        }
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = ids(&output);
    assert!(before.len() >= half && before.len() < expected.len(), "{} lines at the kill", before.len());
    let (success, _, err) = run(memgpt(addr, &["batch", "--concurrency", "8", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]));
    assert!(success, "{err}");
    assert!(err.contains(&format!("{} already in", before.len())), "the rerun skips what was written: {err}");
    let after = ids(&output);
    assert_eq!(after.len(), expected.len(), "one line per id, none lost or repeated");
    assert_eq!(after.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(after[..before.len()], before[..], "written lines are never rewritten");

    let by_id: HashMap<String, serde_json::Value> = records(&output).into_iter().map(|r| (r["id"].as_str().unwrap().to_string(), r)).collect();
    for (_, _, id) in &bad {
        let r = &by_id[*id];
        assert_eq!(r["status"], "error", "{r}");
        assert_eq!(r["error"]["code"], "INVALID_ARGUMENT", "{r}");
    }
    let answered = by_id.values().filter(|r| r["status"] == "ok").count();
    assert_eq!(answered, expected.len() - bad.len());
    assert!(by_id.values().filter(|r| r["status"] == "ok").all(|r| r["citations"].as_array().is_some_and(|c| !c.is_empty())));

    // Two shards split the ids; merged they are the whole job (answers beat error records).
    let shard = |i: u32| {
        let out = dir.path().join(format!("shard-{i}.jsonl"));
        ok(memgpt(addr, &["batch", "--shard", &format!("{i}/2"), "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()]));
        out
    };
    let (s0, s1) = (shard(0), shard(1));
    let (i0, i1): (BTreeSet<String>, BTreeSet<String>) = (ids(&s0).into_iter().collect(), ids(&s1).into_iter().collect());
    assert!(i0.is_disjoint(&i1) && !i0.is_empty() && !i1.is_empty());
    let merged = dir.path().join("merged.jsonl");
    ok(memgpt(None, &["batch", "merge", s0.to_str().unwrap(), s1.to_str().unwrap(), output.to_str().unwrap(), "--output", merged.to_str().unwrap()]));
    assert_eq!(ids(&merged).into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(ids(&merged).len(), expected.len());

    // --retry-failed drops the error records and asks those lines again (still errors).
    let (success, _, err) = run(memgpt(addr, &["batch", "--retry-failed", "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]));
    assert!(success, "{err}");
    assert!(err.contains(&format!("{} questions to ask", bad.len())), "{err}");
    assert_eq!(ids(&output).len(), expected.len());
}

#[test]
fn batch_arguments_are_checked() {
    let (success, _, err) = run(memgpt(None, &["batch", "--input", "/nonexistent/q.jsonl", "--output", "/tmp/x.jsonl"]));
    assert!(!success && err.contains("/nonexistent/q.jsonl"), "{err}");
    let (success, _, err) = run(memgpt(None, &["batch", "--shard", "2/2", "--input", "a", "--output", "b"]));
    assert!(!success && err.contains("INDEX must be below COUNT"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let not_ours = dir.path().join("out.jsonl");
    std::fs::write(&not_ours, "hello\n").unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": 1, \"question\": \"q\"}\n").unwrap();
    let (success, _, err) = run(memgpt(Some("127.0.0.1:1"), &["batch", "--input", input.to_str().unwrap(), "--output", not_ours.to_str().unwrap()]));
    assert!(!success && err.contains("is not a batch record"), "{err}");
    assert_eq!(std::fs::read_to_string(&not_ours).unwrap(), "hello\n", "a foreign file is left as it was");
}
