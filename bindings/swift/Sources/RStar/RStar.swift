// RStar: the Swift API of librstar over its C ABI (module CRStar).
// Written against include/rstar.h (ABI 4) but NOT yet compiled: the machines this was written
// on have no Swift toolchain; CI checks only the CRStar module map with clang.

import CRStar
import Foundation

/// A failed librstar call: the status code and the library's message.
public struct RStarError: Error, CustomStringConvertible {
    public let status: rstar_status
    public let message: String
    public var description: String { "rstar: \(message) (status \(status.rawValue))" }
    public var isCancelled: Bool { status == RSTAR_STATUS_CANCELLED }
}

@inline(__always)
func check(_ st: rstar_status) throws {
    if st != RSTAR_STATUS_OK {
        throw RStarError(status: st, message: String(cString: rstar_last_error_message()))
    }
}

/// Takes a library string: copies it to Swift and frees it.
func take(_ p: UnsafeMutablePointer<CChar>?) -> String? {
    guard let p = p else { return nil }
    defer { rstar_string_free(p) }
    return String(cString: p)
}

/// Whether a predicted answer equals the reference answer, as the search grades.
public func grade(_ pred: String, _ answer: String) throws -> Bool {
    var eq = false
    try check(rstar_grade(pred, answer, &eq))
    return eq
}

/// The final answer of a solution text (the last `\boxed{...}`), if any.
public func extractAnswer(_ text: String) throws -> String? {
    var out: UnsafeMutablePointer<CChar>?
    try check(rstar_extract_answer(text, &out))
    return take(out)
}

/// A loaded model (HF directory or .gguf). Immutable: usable from several threads at once.
public final class Model: @unchecked Sendable {
    let handle: OpaquePointer

    public init(path: String) throws {
        var p: OpaquePointer?
        try check(rstar_model_load(path, &p))
        handle = p!
    }

    deinit { rstar_model_free(handle) }

    /// Greedy (or sampled, with `temperature` > 0) continuation of `prompt`.
    public func generate(_ prompt: String, maxNewTokens: UInt32 = 256, temperature: Float = 0,
                         chat: Bool = false) throws -> String {
        try generateNow(prompt, maxNewTokens: maxNewTokens, temperature: temperature, chat: chat)
    }

    /// `generate` off the caller's thread.
    public func generate(_ prompt: String, maxNewTokens: UInt32 = 256) async throws -> String {
        try await Task.detached {
            try self.generateNow(prompt, maxNewTokens: maxNewTokens, temperature: 0, chat: false)
        }.value
    }

    // The sync body, named apart so the async overloads never resolve to themselves.
    func generateNow(_ prompt: String, maxNewTokens: UInt32, temperature: Float,
                     chat: Bool) throws -> String {
        var params = rstar_generate_params()
        params.struct_size = UInt32(MemoryLayout<rstar_generate_params>.size)  // a newer library fills only this much
        rstar_generate_default_params(&params)
        params.max_new_tokens = maxNewTokens
        params.temperature = temperature
        var out: UnsafeMutablePointer<CChar>?
        try check(rstar_model_generate_text(handle, prompt, chat, &params, nil, nil, &out))
        let json = take(out) ?? "{}"
        let obj = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        return obj?["text"] as? String ?? ""
    }
}

/// The answer to one question.
public struct Solution {
    public let question: String
    /// The PPM-best answer, if the search found one.
    public let answer: String?
    /// The library's full result (trajectories, votes, stats).
    public let json: [String: Any]
}

/// How a solver is made; the defaults are the default model in inference mode.
public struct SolverOptions {
    public var policy: String? = nil
    public var ppm: String? = nil
    public var config: String? = nil
    public var device: String? = nil
    public var threads: UInt32 = 0
    public var executorWorkers: UInt32 = 0
    public var annotation = false
    public var weakSandbox = false
    public init() {}
}

/// A policy (+ PPM) with a search configuration. Calls are serialised inside the library;
/// `cancel()` may be called from any thread.
public final class Solver: @unchecked Sendable {
    let handle: OpaquePointer

    public init(_ options: SolverOptions = SolverOptions()) throws {
        var params = rstar_solver_params()
        params.struct_size = UInt32(MemoryLayout<rstar_solver_params>.size)  // a newer library fills only this much
        rstar_solver_default_params(&params)
        params.threads = options.threads
        params.executor_workers = options.executorWorkers
        params.mode = UInt32(options.annotation ? RSTAR_SOLVER_MODE_ANNOTATION : RSTAR_SOLVER_MODE_INFERENCE)
        params.weak_sandbox = options.weakSandbox ? 1 : 0
        var p: OpaquePointer?
        // The C strings must outlive the call: nest withOptionalCString.
        let st = withOptionalCString(options.policy) { policy in
            withOptionalCString(options.ppm) { ppm in
                withOptionalCString(options.config) { config in
                    withOptionalCString(options.device) { device -> rstar_status in
                        params.policy = policy
                        params.ppm = ppm
                        params.config = config
                        params.device = device
                        return rstar_solver_new_with_params(&params, &p)
                    }
                }
            }
        }
        try check(st)
        handle = p!
    }

    deinit { rstar_solver_free(handle) }

    public func solve(_ question: String) throws -> Solution { try solveNow(question) }

    func solveNow(_ question: String) throws -> Solution {
        var out: UnsafeMutablePointer<CChar>?
        try check(rstar_solver_solve(handle, question, &out))
        let json = take(out) ?? "{}"
        let obj = (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]) ?? [:]
        return Solution(question: question, answer: obj["answer"] as? String, json: obj)
    }

    /// `solve` off the caller's thread; cancelling the Swift task cancels the search.
    public func solve(_ question: String) async throws -> Solution {
        try await withTaskCancellationHandler {
            try await Task.detached { try self.solveNow(question) }.value
        } onCancel: {
            self.cancel()
        }
    }

    /// Evaluates (inference) or annotates (annotation mode; `out` required, resumable) a problem
    /// file; returns the summary JSON text.
    public func runDataset(_ path: String, out: String? = nil, limit: Int = 0) throws -> String {
        try runDatasetNow(path, out: out, limit: limit)
    }

    func runDatasetNow(_ path: String, out: String?, limit: Int) throws -> String {
        var summary: UnsafeMutablePointer<CChar>?
        let st = withOptionalCString(out) { o in
            rstar_solver_run_dataset(handle, path, limit, o, nil, nil, &summary)
        }
        try check(st)
        return take(summary) ?? "{}"
    }

    public func runDataset(_ path: String, out: String? = nil, limit: Int = 0) async throws -> String {
        try await withTaskCancellationHandler {
            try await Task.detached { try self.runDatasetNow(path, out: out, limit: limit) }.value
        } onCancel: {
            self.cancel()
        }
    }

    /// The output lines (JSON text) of `problems`, searched together, in order, for a caller that
    /// writes the output file itself: in annotation mode the tree records `runDataset` appends,
    /// in inference mode its per-problem results. `cancel()` stops it (`RStarError`, cancelled).
    public func runProblems(_ problems: [Problem]) throws -> [String] { try runProblemsNow(problems) }

    func runProblemsNow(_ problems: [Problem]) throws -> [String] {
        let items: [[String: Any]] = problems.map { ["index": $0.index, "problem": $0.record] }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: items), as: UTF8.self)
        var out: UnsafeMutablePointer<CChar>?
        try check(rstar_solver_run_problems(handle, json, &out))
        return (take(out) ?? "").split(separator: "\n").map(String.init)
    }

    /// `runProblems` off the caller's thread; cancelling the Swift task cancels the search.
    public func runProblems(_ problems: [Problem]) async throws -> [String] {
        try await withTaskCancellationHandler {
            try await Task.detached { try self.runProblemsNow(problems) }.value
        } onCancel: {
            self.cancel()
        }
    }

    public func cancel() { rstar_solver_cancel(handle) }
}

/// One problem of `Solver.runProblems`: its position in its dataset (search seeds are keyed by
/// it, so it gets the line `runDataset` writes for it) and a problem-file record
/// (`["question": ..., "answer": ...]`, GSM8K's or MATH's own fields).
public struct Problem {
    public var index: Int
    public var record: [String: Any]
    public init(index: Int, record: [String: Any]) {
        self.index = index
        self.record = record
    }
}

/// The arguments of `rstar evolve`; `policy`, `data` and `workdir` are required.
public struct EvolveOptions {
    public var policy: String
    public var data: String
    /// round-N/ stages and rounds.json; a rerun resumes.
    public var workdir: String
    public var evalData: String? = nil
    public var replayData: String? = nil
    public var rounds: UInt32 = 2
    /// JSON object of `rstar evolve --config` keys.
    public var config: String? = nil
    public var fastPrecision = false
    public var threads: UInt32 = 0
    public init(policy: String, data: String, workdir: String) {
        self.policy = policy
        self.data = data
        self.workdir = workdir
    }
}

/// An event of `evolve`: `kind` "stage" (`skipped` when an earlier run finished it), "problems"
/// (`done` of `total`), "train" (`train`) or "round" (`row`: the finished round's row).
public struct EvolveEvent {
    public static let kinds = ["stage", "problems", "train", "round"]
    public static let stages = ["mcts", "extract", "sft", "ppm", "eval"]
    public let kind: String
    public let round: UInt32
    public let stage: String
    public let skipped: Bool
    public let done: UInt64
    public let total: UInt64
    public let train: rstar_train_progress?
    public let row: [String: Any]?

    init(_ e: rstar_evolve_event) {
        kind = EvolveEvent.kinds[Int(e.kind)]
        round = e.round
        stage = EvolveEvent.stages[Int(e.stage)]
        skipped = e.skipped != 0
        done = e.done
        total = e.total
        train = kind == "train" ? e.train : nil
        row = e.round_json.flatMap {
            try? JSONSerialization.jsonObject(with: Data(String(cString: $0).utf8)) as? [String: Any]
        }
    }
}

/// What `evolve`'s C callback reaches through `user_data`: the progress closure and a cancel
/// flag (set from any thread by task cancellation).
final class EvolveState: @unchecked Sendable {
    let progress: ((EvolveEvent) -> Bool)?
    private let lock = NSLock()
    private var stop = false
    init(_ progress: ((EvolveEvent) -> Bool)?) { self.progress = progress }
    func cancel() { lock.lock(); stop = true; lock.unlock() }
    var cancelled: Bool { lock.lock(); defer { lock.unlock() }; return stop }
}

/// Runs (or resumes, in `options.workdir`) self-evolution rounds as `rstar evolve` does: MCTS
/// synthesis, extraction, policy SFT, PPM training, evaluation. `progress` returning false stops
/// the run at that event (`RStarError`, cancelled); calling again with the same workdir resumes.
/// Returns the per-round table (the rows of workdir/rounds.json).
public func evolve(_ options: EvolveOptions,
                   progress: ((EvolveEvent) -> Bool)? = nil) throws -> [[String: Any]] {
    try evolveNow(options, EvolveState(progress))
}

/// `evolve` off the caller's thread; cancelling the Swift task stops it at its next event.
public func evolve(_ options: EvolveOptions,
                   progress: ((EvolveEvent) -> Bool)? = nil) async throws -> [[String: Any]] {
    let state = EvolveState(progress)
    return try await withTaskCancellationHandler {
        try await Task.detached { try evolveNow(options, state) }.value
    } onCancel: {
        state.cancel()
    }
}

func evolveNow(_ options: EvolveOptions, _ state: EvolveState) throws -> [[String: Any]] {
    var params = rstar_evolve_params()
    params.struct_size = UInt32(MemoryLayout<rstar_evolve_params>.size)  // a newer library fills only this much
    rstar_evolve_default_params(&params)
    params.rounds = options.rounds
    params.precision = options.fastPrecision ? 1 : 0
    params.threads = options.threads
    let callback: rstar_evolve_callback = { event, user in
        let state = Unmanaged<EvolveState>.fromOpaque(user!).takeUnretainedValue()
        guard let event = event, !state.cancelled else { return false }
        return state.progress?(EvolveEvent(event.pointee)) ?? true
    }
    let user = Unmanaged.passUnretained(state).toOpaque()
    var out: UnsafeMutablePointer<CChar>?
    // The C strings must outlive the call: nest the withCString scopes.
    let st = options.policy.withCString { policy in
        options.data.withCString { data in
            options.workdir.withCString { workdir in
                withOptionalCString(options.evalData) { evalData in
                    withOptionalCString(options.replayData) { replayData in
                        withOptionalCString(options.config) { config -> rstar_status in
                            params.policy = policy
                            params.data = data
                            params.workdir = workdir
                            params.eval_data = evalData
                            params.replay_data = replayData
                            params.config = config
                            return withExtendedLifetime(state) {
                                rstar_evolve_run(&params, callback, user, &out)
                            }
                        }
                    }
                }
            }
        }
    }
    try check(st)
    let json = take(out) ?? "[]"
    return (try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]]) ?? []
}

/// SFT or PPM training; `config` is the JSON of `rstar train --config` plus `data` and
/// `state_dir`.
public final class Trainer: @unchecked Sendable {
    let handle: OpaquePointer

    public init(modelDir: String, configJSON: String = "{}") throws {
        var p: OpaquePointer?
        try check(rstar_trainer_new(modelDir, configJSON, &p))
        handle = p!
    }

    deinit { rstar_trainer_free(handle) }

    public func step(_ n: UInt32 = 1) throws { try check(rstar_trainer_step(handle, n, nil, nil)) }

    public func epoch() throws { try epochNow() }

    func epochNow() throws { try check(rstar_trainer_epoch(handle, nil, nil)) }

    public func epoch() async throws {
        try await withTaskCancellationHandler {
            try await Task.detached { try self.epochNow() }.value
        } onCancel: {
            self.cancel()
        }
    }

    public var finished: Bool {
        get throws {
            var out = false
            try check(rstar_trainer_finished(handle, &out))
            return out
        }
    }

    public func save(to dir: String) throws { try check(rstar_trainer_save(handle, dir)) }

    public func cancel() { rstar_trainer_cancel(handle) }
}

func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let s = s else { return body(nil) }
    return s.withCString { body($0) }
}
