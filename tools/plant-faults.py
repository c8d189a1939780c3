#!/usr/bin/env python3
"""Shows that the test suite catches the faults that matter, by planting them.

    tools/plant-faults.py [--only NAME[,NAME...]] [--scratch DIR] [--keep] [--list]

Copies the repository's working tree (tracked and untracked, not ignored files:
never .build/) to a directory outside it (--copy) and never touches the original. There,
for each fault of FAULTS, one at a time: applies its exact-string
replacements (each `old` must occur exactly once, else the fault is reported
STALE: its definition no longer matches the code, and it is not counted as
caught), builds the tests, runs only the fault's test filters, restores the
file, and records which tests failed. One scratch build directory is reused
for every fault (and between runs), so each fault costs an incremental build.

Before the faults, the same filters run on the unmodified copy: they must
pass, or a "caught" would mean nothing.

A fault counts as CAUGHT only when one of the tests named as its catchers
(the tests meant to notice that fault: "Class" or "Class/method") fails. A run
that times out is TIMEOUT, one where only other tests fail is UNRELATED (a
flaky or unrelated test is not a catch), one where the tests exit non-zero
without a failing test is UNEXPLAINED: none of them counts as caught. The
table records, for every fault, exactly which tests failed.

Prints a table (fault, catchers, tests that failed, verdict) and exits
non-zero unless every fault is CAUGHT. The whole list takes 30-60 minutes on
2 cores (the first run longer: it builds everything once; the supervisor's
faults run real clusters); choose a subset with --only. CI does not run it.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, what it breaks, [(file, old, new)], test filters (swift test --filter regexes), catchers.
# The catchers are the tests that must fail for the fault to count as caught: "Class" (any of its
# tests) or "Class/method"; None: every test the filters select (each filter names a test class).
FAULTS = [
    ("lr-scale-dropped", "the server ignores the push's learning-rate scale (warm-up and decay stop)",
     [("Sources/ScenePSServer/RequestHandler.swift",
       "t.push(keys: k, gradients: base, lrScale: b.lrScale)", "t.push(keys: k, gradients: base)"),
      ("Sources/ScenePSServer/RequestHandler.swift",
       "t.push(offset: Int(blk.offset), gradient: $0, lrScale: b.lrScale)", "t.push(offset: Int(blk.offset), gradient: $0)")],
     ["ContractTests", "AdamTests"]),
    ("global-step", "sparse rows are bias-corrected with the table's push count, not the row's own step",
     [("Sources/ScenePSServer/SparseTable.swift",
       "let step = stepPtr.load(as: UInt32.self) &+ 1", "let step = UInt32(truncatingIfNeeded: pushes) &+ 1")],
     ["AdamTests", "ContractTests"]),
    ("assembler-table-swap", "the assembler pulls scene keys from behaviour_scene and history scenes from scene",
     [("Sources/ScenePSWorker/FeatureSchema.swift",
       'Slot(\\.sceneEmbedding, "sceneEmbedding", reads: .scene, keyedBy: .scene)',
       'Slot(\\.sceneEmbedding, "sceneEmbedding", reads: .behaviourScene, keyedBy: .scene)'),
      ("Sources/ScenePSWorker/FeatureSchema.swift",
       'Slot(\\.historyScene, "historyScene", reads: .behaviourScene, keyedBy: .historyScene)',
       'Slot(\\.historyScene, "historyScene", reads: .scene, keyedBy: .historyScene)')],
     ["BatchAssemblerTests", "FixtureTests"]),
    ("scatter-wrong-row", "the gradient of local row 1 is added to row 0",
     [("Sources/ScenePSWorker/BatchAssembler.swift",
       "let so = p * width, to = r * width", "let so = p * width, to = (r == 1 ? 0 : r) * width")],
     ["BatchAssemblerTests", "FixtureTests"]),
    ("future-leak", "a history includes the user's next positive behaviour (from the future)",
     [("Sources/ScenePSData/ChunkTables.swift",
       "let e = Int(rec.histEnd)", "let e = min(Int(rec.histEnd) + 1, posStart[u + 1] - posStart[u])")],
     ["HistoryTests"]),
    ("shard-hash", "a consistent change of where keys land (another table multiplier in the shard hash)",
     [("Sources/ScenePSCore/Sharding.swift", "0xD6E8_FEB8_6659_FD93", "0xD6E8_FEB8_6659_FD95")],
     ["GoldenValueTests", "ShardingDistributionTests", "PSClientTests"]),
    ("attention-mask-skipped", "the long-term attention attends to padding positions too",
     [("Sources/ScenePSModel/MSIFModel.swift",
       "let nl = c.useLong ? min(hl, c.lLong) : 0", "let nl = c.useLong ? min(L, c.lLong) : 0")],
     ["FixtureTests"]),
    ("powf-fallback", "Adam's bias correction past its 4096-step table uses t = 4096",
     [("Sources/ScenePSServer/Adam.swift",
       "let c2 = small ? bias2[Int(step) - 1] : 1 - powf(b2, t)",
       "let c2 = small ? bias2[Int(step) - 1] : 1 - powf(b2, Float(Adam.biasTableSize))")],
     ["AdamTests", "ContractTests"]),
    ("nan-gradient-accepted", "the server applies a sparse push with NaN or Inf in its gradient",
     [("Sources/ScenePSServer/RequestHandler.swift",
       "if !allFinite(blk.values) {\n                return .failure(ErrorReply(status: .nonFinite, message: \"push to table",
       "if false && !allFinite(blk.values) {\n                return .failure(ErrorReply(status: .nonFinite, message: \"push to table")],
     ["WireBadInputTests", "PSClientTests"]),
    ("retried-push-applied-twice", "de-duplication forgets the request ids it recorded",
     [("Sources/ScenePSServer/DedupWindow.swift",
       "if let prior = r.ids[id] {", "if let prior = r.ids[id], prior == UInt64.max {")],
     ["WireBadInputTests"]),
    # Beyond the list:
    ("scene-index-dropped", "gather leaves every example's scene index at 0 (scene 0's gate and head for all)",
     [("Sources/ScenePSWorker/BatchAssembler.swift",
       "for b in 0..<B { sc[b] = sceneIndex[b] }", "for b in 0..<B { sc[b] = 0 }")],
     ["BatchAssemblerTests", "FixtureTests"]),
    ("same-scene-filter-inverted", "the same-scene ablation keeps the other scenes' behaviours",
     [("Sources/ScenePSWorker/BatchAssembler.swift",
       "if sameSceneOnly && hs != s { continue }", "if sameSceneOnly && hs == s { continue }")],
     ["BatchAssemblerTests"]),
    ("declaration-conflict-ignored", "a re-declaration with another learning rate is accepted silently",
     [("Sources/ScenePSServer/TableRegistry.swift",
       "if let field = TableRegistry.firstDifference(existing, s) {",
       "if let field = TableRegistry.firstDifference(existing, s), field.name.isEmpty {")],
     ["ContractTests"]),
    ("row-seed-changed", "initial rows come from another seed derivation",
     [("Sources/ScenePSServer/RowInitializer.swift",
       "KeyHash.mix64(KeyHash.mix64(spec.seed ^ (UInt64(spec.id) << 40)) ^ key)",
       "KeyHash.mix64(KeyHash.mix64(spec.seed ^ (UInt64(spec.id) << 41)) ^ key)")],
     ["ContractTests"]),
    # Issue 21: the coordinator, the supervisor, the client's resend, checkpoints, the schedule, CSV, the tokenizer.
    ("coordinator-dead-lease-kept", "a worker declared dead keeps its lease: its chunk is never leased again",
     [("Sources/ScenePSCoordinator/Coordinator.swift",
       "j.leases.removeAll { $0.member == id }", "j.leases.removeAll { $0.member == id && retired }")],
     ["CoordinatorTests"], ["CoordinatorTests/testADeadWorkersLeaseIsReleasedToAnotherWorker"]),
    ("coordinator-scale-down-late", "scaling a pool down retires one worker too few",
     [("Sources/ScenePSCoordinator/Coordinator.swift", ".count > target {", ".count > target + 1 {")],
     ["CoordinatorTests"], ["CoordinatorTests/testScalingDownRetiresAWorkerAfterItsChunk"]),
    ("coordinator-rewind-keeps-progress", "a global rewind within an epoch keeps the chunks done after the cut",
     [("Sources/ScenePSCoordinator/Coordinator.swift", "        j.done = p.done\n", "        j.done = p.epoch == from ? j.done : p.done\n")],
     ["CoordinatorTests"], ["CoordinatorTests/testARewindUndoesChunksDoneAfterTheCutAndReleasesLeasesInFlight"]),
    ("supervisor-restarts-uncounted", "the supervisor restarts a dead process without counting it (no --max-restarts limit)",
     [("Sources/psctl/Supervise.swift", "restarts[child.name] = n + 1", "restarts[child.name] = n")],
     ["ElasticTests/testAKilledWorkersLeaseIsTrainedByAnotherAndTheJobFinishes"],
     ["ElasticTests/testAKilledWorkersLeaseIsTrainedByAnotherAndTheJobFinishes"]),
    ("supervisor-recovery-debt-dropped", "a partial recovery no longer reports the pushes it undid",
     [("Sources/psctl/Supervise.swift", 'if let undone { e["pushes_undone"] = "\\(undone)" }', "_ = undone")],
     ["ElasticTests/testAKilledServerComesBackFromTheLatestCheckpoint"],
     ["ElasticTests/testAKilledServerComesBackFromTheLatestCheckpoint"]),
    ("client-no-resend-on-loss", "the client does not send a request again when its connection is lost (waits for the timeout)",
     [("Sources/ScenePSClient/PSClient.swift", "try transmit(r, to: again)", "_ = again")],
     ["PSClientTests"], ["PSClientTests/testARequestLostWithItsConnectionIsSentAgainAtOnce",
                         "PSClientTests/testOverZeroMQARequestToAServerThatDiedIsAnsweredByItsReplacement"]),
    ("checkpoint-checksum-unchecked", "a shard file whose checksum differs from the manifest's is restored",
     [("Sources/ScenePSServer/CheckpointFile.swift",
       "guard XXH64.format(sum) == expected.checksum else {", "guard true || XXH64.format(sum) == expected.checksum else {")],
     ["CheckpointTests"], ["CheckpointTests/testDamagedCheckpointsAreRefusedNamingFileAndCheckAndLatestGoodFallsBack"]),
    ("reshard-keeps-foreign-rows", "re-sharding a checkpoint onto another server count keeps every row on every server",
     [("Sources/ScenePSServer/CheckpointRestore.swift",
       ": t.insertRecords(batch) { Sharding.server(table: id, key: $0, servers: n) == me }",
       ": t.insertRecords(batch) { Sharding.server(table: id, key: $0, servers: n) == me || n > 0 }")],
     ["CheckpointTests"], ["CheckpointTests/testReshardingOntoOneAndThreeServersKeepsRowsMomentsAndSteps",
                           "CheckpointTests/testReshardingThreeOntoTwoServersKeepsRowsMomentsStepsAndTheDenseSlices"]),
    ("schedule-no-rollback", "the schedule never goes back to the best epoch's model (rollback and stop keep the last)",
     [("Sources/ScenePSCore/LearningRateSchedule.swift",
       "let restore = bestEpoch != epoch && (action == .stop || action == .rollbackDecay)",
       "let restore = bestEpoch != epoch && (action == .stop || action == .rollbackDecay) && epoch < 0")],
     ["LearningRateScheduleTests"], None),
    ("csv-lone-cr-in-field", "a lone CR does not end a CSV line (files from old Mac tools are one long line)",
     [("Sources/ScenePSData/CSVScanner.swift", "if b == 44 || b == 10 || b == 13 { break }", "if b == 44 || b == 10 { break }")],
     ["CSVScannerTests", "CSVLayoutTests"], None),
    ("csv-columns-by-position", "header columns are taken by position, not by name",
     [("Sources/ScenePSData/CSVScanner.swift", "required = names.map { seen[$0]! }", "required = Array(names.indices)")],
     ["CSVLayoutTests", "BadInputTests"], ["CSVLayoutTests"]),
    ("tokenizer-no-continuation-prefix", "WordPiece looks continuation pieces up without their ## prefix",
     [("Sources/ScenePSText/WordPieceTokenizer.swift",
       "if start > 0 { piece.append(contentsOf: continuingPrefix.unicodeScalars) }",
       "if start < 0 { piece.append(contentsOf: continuingPrefix.unicodeScalars) }")],
     ["TokenizerTests"], None),
]


# Test classes that start the release executables (they need SCENEPS_BIN built with the fault).
INTEGRATION = {"ClusterTests", "ElasticTests", "CheckpointProcessTests", "FusionTrainingTests", "TitleFeatureTrainingTests"}


def run(cmd, cwd, timeout, env=None):
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True,
                           errors="replace", env=env)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out


def copy_tree(dst):
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           stdout=subprocess.PIPE).stdout.decode().split("\0")
    for f in files:
        if not f or not os.path.isfile(os.path.join(ROOT, f)):
            continue
        os.makedirs(os.path.join(dst, os.path.dirname(f)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), os.path.join(dst, f))
    # The pinned dependency versions (ignored by git), so the copy resolves what the tree uses.
    if os.path.isfile(os.path.join(ROOT, "Package.resolved")):
        shutil.copy2(os.path.join(ROOT, "Package.resolved"), os.path.join(dst, "Package.resolved"))


def failed_tests(output):
    failed = sorted(set(re.findall(r"Test Case '(?:-\[)?[\w.]*?(\w+[.\s]\w+)\]?' failed", output)))
    failed = [f.replace(" ", ".") for f in failed]
    if not failed and re.search(r"error: Exited with (unexpected )?signal|Fatal error|crashed", output):
        started = re.findall(r"Test Case '(?:-\[)?[\w.]*?(\w+[.\s]\w+)\]?' started", output)
        failed = ["%s (crashed)" % (started[-1].replace(" ", ".") if started else "?")]
    return failed


def catches(test, catchers):
    """Whether `test` ("Class.method", maybe with " (crashed)") is one of `catchers` ("Class" or "Class/method")."""
    name = test.split(" ")[0]
    cls = name.split(".")[0]
    return any(c == cls or c.replace("/", ".") == name for c in catchers)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated fault names")
    ap.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(), "sceneps-plant-faults-build"),
                    help="scratch build directory, reused between faults and runs (default: %(default)s)")
    ap.add_argument("--copy", default=os.path.join(tempfile.gettempdir(), "sceneps-plant-faults-src"),
                    help="where the sources are copied (emptied first; a fixed path, so that the scratch build "
                         "stays incremental between runs: default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the copy of the sources")
    ap.add_argument("--list", action="store_true", help="list the faults and exit")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per build and per test run")
    args = ap.parse_args()
    faults = FAULTS
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in {f[0] for f in FAULTS}]
        if unknown:
            sys.exit("unknown fault(s): %s" % ", ".join(unknown))
        faults = [f for f in FAULTS if f[0] in names]
    faults = [f if len(f) == 5 else f + (None,) for f in faults]
    if args.list:
        for name, what, _, filters, catchers in faults:
            print("%-34s %s  [tests %s; caught by %s]" % (name, what, ", ".join(filters), ", ".join(catchers or filters)))
        return 0

    src = os.path.abspath(args.copy)
    if os.path.commonpath([src, ROOT]) == ROOT:
        sys.exit("--copy must be outside the repository")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    copy_tree(src)   # copy2 keeps modification times: unchanged files are not rebuilt
    print("== sources copied to %s; scratch build %s" % (src, args.scratch), flush=True)
    release_scratch = args.scratch + "-release"
    debug_build = ["swift", "build", "--build-tests", "--scratch-path", args.scratch]
    # Integration tests start the release executables (the fault planted in them too): SCENEPS_BIN.
    release_build = ["swift", "build", "-c", "release", "--scratch-path", release_scratch]
    release_bin = os.path.join(release_scratch, "release")
    env = dict(os.environ, SCENEPS_BIN=release_bin)

    def needs_release(filters):
        return any(f.split("/")[0] in INTEGRATION for f in filters)

    def build(filters):
        status, out = run(debug_build, src, args.timeout)
        if status == 0 and needs_release(filters):
            status, out = run(release_build, src, args.timeout)
        return status, out

    def test_cmd(filters):
        cmd = ["swift", "test", "--skip-build", "--scratch-path", args.scratch]
        for f in filters:
            cmd += ["--filter", f]
        return cmd

    t0 = time.time()
    all_filters = sorted({f for fault in faults for f in fault[3]})
    status, out = build(all_filters)
    if status != 0:
        print(out[-4000:])
        sys.exit("the unmodified sources do not build")
    status, out = run(test_cmd(all_filters), src, args.timeout, env)
    if status != 0:
        print(out[-6000:])
        sys.exit("the relevant tests fail on the unmodified sources: fix that first (%s)" % ", ".join(failed_tests(out)))
    print("== unmodified: %s pass (%.0f s)" % (", ".join(all_filters), time.time() - t0), flush=True)

    results = []
    for name, what, edits, filters, catchers in faults:
        t1 = time.time()
        originals = {}
        stale = None
        for path, old, new in edits:
            full = os.path.join(src, path)
            if full not in originals:
                with open(full) as fh:
                    originals[full] = fh.read()
            with open(full) as fh:
                text = fh.read()
            n = text.count(old)
            if n != 1:
                stale = "%s: the text to replace occurs %d times (expected once)" % (path, n)
                break
            with open(full, "w") as fh:
                fh.write(text.replace(old, new))
        try:
            if stale:
                results.append((name, what, "STALE", stale))
            else:
                status, out = build(filters)
                if status != 0:
                    errors = [l for l in out.splitlines() if "error:" in l][:3]
                    results.append((name, what, "BUILD-ERROR", " / ".join(errors) or "build failed"))
                else:
                    status, out = run(test_cmd(filters), src, args.timeout, env)
                    failed = failed_tests(out)
                    by = [f for f in failed if catches(f, catchers or filters)]
                    if status is None:
                        verdict = "TIMEOUT"   # a hang is not a catch, whatever failed before it
                        detail = "timed out after %d s; failed before: %s" % (args.timeout, ", ".join(failed) or "none")
                    elif status == 0:
                        verdict, detail = "MISSED", "all of %s pass" % ", ".join(filters)
                    elif by:
                        verdict, detail = "CAUGHT", ", ".join(failed)
                    elif failed:
                        verdict, detail = "UNRELATED", "only other tests failed: %s" % ", ".join(failed)
                    else:
                        verdict, detail = "UNEXPLAINED", "exit %s without a failing test: %s" % (status, out.strip().splitlines()[-1:])
                    results.append((name, what, verdict, detail))
        finally:
            for full, text in originals.items():
                with open(full, "w") as fh:
                    fh.write(text)
        print("== %-34s %-11s %4.0f s  %s" % (name, results[-1][2], time.time() - t1, results[-1][3]), flush=True)

    print()
    print("| fault | what it breaks | must be caught by | tests that failed | result |")
    print("|---|---|---|---|---|")
    for (name, what, verdict, detail), fault in zip(results, faults):
        print("| %s | %s | %s | %s | %s |" % (name, what, ", ".join(fault[4] or fault[3]), detail, verdict))
    caught = sum(1 for r in results if r[2] == "CAUGHT")
    print("\n%d of %d planted faults caught (%.0f min)" % (caught, len(results), (time.time() - t0) / 60))
    if not args.keep:
        shutil.rmtree(src, ignore_errors=True)
    else:
        print("sources kept in %s" % src)
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
