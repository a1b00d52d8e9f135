// XCTest suite of RStar (not compiled here: no Swift toolchain on these machines).
// Run with: RSTAR_TINY_MODEL=/path/to/models/tiny swift test
import XCTest
@testable import RStar

final class RStarTests: XCTestCase {
    let question = "A jacket costs $160. It is on sale for 25% off. What is the sale price in dollars?"

    func tinyModel() throws -> String {
        guard let dir = ProcessInfo.processInfo.environment["RSTAR_TINY_MODEL"] else {
            throw XCTSkip("SKIPPED: set RSTAR_TINY_MODEL")
        }
        return dir
    }

    func testGrade() throws {
        XCTAssertTrue(try grade("\\frac{1}{2}", "0.5"))
        XCTAssertFalse(try grade("121", "120"))
        XCTAssertEqual(try extractAnswer("so \\boxed{42}."), "42")
    }

    func testSolvesTheReadmeQuestion() async throws {
        let dir = try tinyModel()
        var o = SolverOptions()
        o.policy = dir + "/policy"
        o.ppm = dir + "/ppm"
        o.config = try String(contentsOfFile: dir + "/search.toml")
        let solver = try Solver(o)
        let sol = try await solver.solve(question)
        XCTAssertTrue(try grade(sol.answer ?? "", "120"))
    }

    func testErrors() {
        XCTAssertThrowsError(try Model(path: "/nonexistent/model")) { e in
            XCTAssertTrue((e as? RStarError)?.message.contains("nonexistent") ?? false)
        }
        var o = SolverOptions()
        o.annotation = true
        XCTAssertThrowsError(try Solver(o)) { e in
            XCTAssertEqual((e as? RStarError)?.status, RSTAR_STATUS_INVALID_ARGUMENT)
        }
    }

    /// runProblems gives, for a problem at position i, the tree record runDataset appends for it.
    func testRunProblemsLinesEqualTheDatasetRun() throws {
        let dir = try tinyModel()
        let lines = try String(contentsOfFile: dir + "/heldout.jsonl").split(separator: "\n").prefix(3)
        let tmp = NSTemporaryDirectory() + "rstar-swift-\(getpid())"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: tmp + "/p.jsonl", atomically: true, encoding: .utf8)
        var o = SolverOptions()
        o.policy = dir + "/policy"
        o.ppm = dir + "/ppm"
        o.config = #"{"rollouts": 2, "width": 2, "max_depth": 4, "max_step_tokens": 48}"#
        o.annotation = true
        let solver = try Solver(o)
        _ = try solver.runDataset(tmp + "/p.jsonl", out: tmp + "/trees.jsonl")
        let ref = try String(contentsOfFile: tmp + "/trees.jsonl").split(separator: "\n").map(String.init)
        let problems = try lines.enumerated().map { i, l in
            Problem(index: i, record: try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any])
        }
        XCTAssertEqual(try solver.runProblems(problems), ref)
        XCTAssertEqual(try solver.runProblems([problems[2]]), [ref[2]])
        XCTAssertThrowsError(try solver.runProblems([Problem(index: 0, record: ["question": "no answer"])])) { e in
            XCTAssertEqual((e as? RStarError)?.status, RSTAR_STATUS_FORMAT)
        }
    }

    /// evolve: a progress closure returning false cancels; a rerun resumes and returns the rows.
    func testEvolveCancelAndResume() throws {
        let dir = try tinyModel()
        let tmp = NSTemporaryDirectory() + "rstar-swift-evolve-\(getpid())"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try #"[{"question": "What is 6 times 7?", "answer": "42"}, {"question": "What is 2 plus 3?", "answer": "5"}, {"question": "What is 10 minus 4?", "answer": "6"}]"#
            .write(toFile: tmp + "/p.json", atomically: true, encoding: .utf8)
        var o = EvolveOptions(policy: dir + "/policy", data: tmp + "/p.json", workdir: tmp + "/work")
        o.rounds = 1
        o.threads = 2
        o.config = #"{"mcts": {"rollouts": 2, "width": 2, "max_depth": 2, "max_step_tokens": 6}, "round1_rollouts": 2, "batch": 2, "holdout": 0.34, "eval_ppm_rollouts": 1, "sft": {"max_steps": 1, "batch_size": 1, "seq_len": 1024}, "ppm": {"max_steps": 1, "batch_size": 1, "seq_len": 1024}}"#
        XCTAssertThrowsError(try evolve(o) { !($0.kind == "problems" && $0.round == 1) }) { e in
            XCTAssertEqual((e as? RStarError)?.status, RSTAR_STATUS_CANCELLED)
        }
        var stages: [String] = []
        let rows = try evolve(o) { e in
            if e.kind == "stage" { stages.append(e.stage) }
            return true
        }
        XCTAssertEqual(rows.map { $0["round"] as? Int }, [0, 1])
        XCTAssertEqual(stages, ["eval", "mcts", "extract", "sft", "ppm", "eval"])
    }
}
