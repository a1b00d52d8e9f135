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
}
