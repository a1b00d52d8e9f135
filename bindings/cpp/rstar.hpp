// rstar.hpp - header-only C++17 wrapper over librstar's C ABI (include/rstar.h).
//
// Move-only RAII handles, errors as rstar::Error (status + message), std::string_view in,
// std::string out, callbacks as std::function. Exceptions thrown by a callback are caught at the
// C boundary and rethrown from the call that ran it (they never unwind through librstar).
//
//   rstar::Model m{"models/tiny/policy"};
//   std::string t = m.generate("2 + 2 =", {});
//   rstar::Solver s{};                                  // the default model
//   auto sol = s.solve("What is 15% of 80?");
//   if (sol.answer) std::cout << *sol.answer << "\n";
//   bool same = rstar::grade("\\frac{1}{2}", "0.5");
//
// Thread-safety follows the C handles: a Model may be used from several threads at once; calls
// on one Solver are serialised inside the library, Solver::cancel may be called from any thread.
#ifndef RSTAR_HPP
#define RSTAR_HPP

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rstar.h"

namespace rstar {

// A failed librstar call: the status code and the library's message.
class Error : public std::runtime_error {
public:
    Error(rstar_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    rstar_status status() const noexcept { return status_; }

private:
    rstar_status status_;
};

namespace detail {

inline void check(rstar_status s) {
    if (s != RSTAR_STATUS_OK) throw Error(s, rstar_last_error_message());
}

// A params struct filled by its rstar_*_default_params, with struct_size set first so that a
// newer library fills only the fields of this header's struct.
template <class P>
P defaults(void (*fill)(P *)) {
    P p{};
    p.struct_size = sizeof p;
    fill(&p);
    return p;
}

// A string owned by the library, freed on scope exit.
struct OwnedString {
    char *p = nullptr;
    OwnedString() = default;
    OwnedString(const OwnedString &) = delete;
    OwnedString &operator=(const OwnedString &) = delete;
    ~OwnedString() { rstar_string_free(p); }
    std::string str() const { return p ? std::string(p) : std::string(); }
};

// A NUL-terminated copy of a string_view (the C ABI takes C strings).
inline std::string z(std::string_view s) { return std::string(s); }

inline const char *opt_c(const std::string &s) { return s.empty() ? nullptr : s.c_str(); }

// Minimal reader of librstar's result JSON: the value of a top-level key when it is a string
// (nullopt when null, absent or not a string).
class JsonScan {
public:
    explicit JsonScan(std::string_view j) : j_(j) {}

    std::optional<std::string> top_string(std::string_view key) {
        i_ = 0;
        ws();
        if (!eat('{')) return std::nullopt;
        while (true) {
            ws();
            if (peek() != '"') return std::nullopt;
            std::string k = str();
            ws();
            if (!eat(':')) return std::nullopt;
            ws();
            if (k == key) {
                if (peek() == '"') return str();
                return std::nullopt;
            }
            skip();
            ws();
            if (!eat(',')) return std::nullopt;
        }
    }

private:
    std::string_view j_;
    size_t i_ = 0;
    char peek() const { return i_ < j_.size() ? j_[i_] : '\0'; }
    bool eat(char c) {
        if (peek() != c) return false;
        ++i_;
        return true;
    }
    void ws() {
        while (i_ < j_.size() && (j_[i_] == ' ' || j_[i_] == '\n' || j_[i_] == '\t' || j_[i_] == '\r'))
            ++i_;
    }
    static void utf8(std::string &out, uint32_t c) {
        if (c < 0x80) {
            out += char(c);
        } else if (c < 0x800) {
            out += char(0xC0 | (c >> 6));
            out += char(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out += char(0xE0 | (c >> 12));
            out += char(0x80 | ((c >> 6) & 0x3F));
            out += char(0x80 | (c & 0x3F));
        } else {
            out += char(0xF0 | (c >> 18));
            out += char(0x80 | ((c >> 12) & 0x3F));
            out += char(0x80 | ((c >> 6) & 0x3F));
            out += char(0x80 | (c & 0x3F));
        }
    }
    uint32_t hex4() {
        uint32_t v = 0;
        for (int k = 0; k < 4 && i_ < j_.size(); ++k, ++i_) {
            char c = j_[i_];
            v = v * 16 + uint32_t(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
        }
        return v;
    }
    std::string str() {
        std::string out;
        ++i_;  // opening quote
        while (i_ < j_.size() && j_[i_] != '"') {
            char c = j_[i_++];
            if (c != '\\') {
                out += c;
                continue;
            }
            char e = peek();
            ++i_;
            switch (e) {
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case 'r': out += '\r'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'u': {
                uint32_t c1 = hex4();
                if (c1 >= 0xD800 && c1 < 0xDC00 && peek() == '\\') {
                    i_ += 2;
                    c1 = 0x10000 + ((c1 - 0xD800) << 10) + (hex4() - 0xDC00);
                }
                utf8(out, c1);
                break;
            }
            default: out += e;
            }
        }
        ++i_;  // closing quote
        return out;
    }
    void skip() {
        char c = peek();
        if (c == '"') {
            str();
        } else if (c == '{' || c == '[') {
            int depth = 0;
            while (i_ < j_.size()) {
                char d = j_[i_];
                if (d == '"') {
                    str();
                    continue;
                }
                ++i_;
                if (d == '{' || d == '[') ++depth;
                if ((d == '}' || d == ']') && --depth == 0) return;
            }
        } else {
            while (i_ < j_.size() && j_[i_] != ',' && j_[i_] != '}' && j_[i_] != ']') ++i_;
        }
    }
};

// Holds the first exception a callback threw, to rethrow after the C call returns.
struct Pending {
    std::exception_ptr error;
    void rethrow() {
        if (error) std::rethrow_exception(std::exchange(error, nullptr));
    }
};

// What a C callback's user_data points to: the caller's function and its first exception.
template <class F>
struct Callback {
    const F *f;
    Pending pending;

    // Runs f(args...) for the C callback: an exception is kept (to rethrow after the call) and
    // cancels the call (false), so nothing unwinds into the library.
    template <class... A>
    static bool call(void *user, A &&...args) noexcept {
        auto *c = static_cast<Callback *>(user);
        try {
            return (*c->f)(std::forward<A>(args)...);
        } catch (...) {
            if (!c->pending.error) c->pending.error = std::current_exception();
            return false;
        }
    }
};

}  // namespace detail

// Generation settings (rstar_generate_params) and an optional streaming callback.
struct GenerateOptions {
    uint32_t max_new_tokens = 256;
    float temperature = 0.0f;
    uint32_t top_k = 0;
    float top_p = 1.0f;
    uint64_t seed = 0;
    std::vector<std::string> stop;
    bool ignore_eos = false;
    // Render the prompt through the model's chat template.
    bool chat = false;
    // Receives text as it becomes final; return false to cancel (rstar::Error, CANCELLED).
    std::function<bool(std::string_view)> on_text;
};

// A loaded model (HF directory or .gguf). Move-only.
class Model {
public:
    explicit Model(std::string_view path) {
        detail::check(rstar_model_load(detail::z(path).c_str(), &m_));
    }
    Model(Model &&o) noexcept : m_(std::exchange(o.m_, nullptr)) {}
    Model &operator=(Model &&o) noexcept {
        if (this != &o) {
            rstar_model_free(m_);
            m_ = std::exchange(o.m_, nullptr);
        }
        return *this;
    }
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;
    ~Model() { rstar_model_free(m_); }

    // The generated text.
    std::string generate(std::string_view prompt, const GenerateOptions &opts = {}) const {
        std::string json = generate_json(prompt, opts);
        return detail::JsonScan(json).top_string("text").value_or("");
    }

    // The full result JSON: {"ids", "text", "finish_reason", "stop_string", ...}.
    std::string generate_json(std::string_view prompt, const GenerateOptions &opts = {}) const {
        auto p = detail::defaults(rstar_generate_default_params);
        p.max_new_tokens = opts.max_new_tokens;
        p.temperature = opts.temperature;
        p.top_k = opts.top_k;
        p.top_p = opts.top_p;
        p.seed = opts.seed;
        p.ignore_eos = opts.ignore_eos;
        std::vector<const char *> stops;
        for (const auto &s : opts.stop) stops.push_back(s.c_str());
        p.stop = stops.empty() ? nullptr : stops.data();
        p.n_stop = stops.size();
        using Ctx = detail::Callback<std::function<bool(std::string_view)>>;
        Ctx ctx{&opts.on_text, {}};
        auto tramp = [](const char *text, size_t len, void *user) -> bool {
            return Ctx::call(user, std::string_view(text, len));
        };
        detail::OwnedString out;
        rstar_status st = rstar_model_generate_text(m_, detail::z(prompt).c_str(), opts.chat, &p,
                                                    opts.on_text ? +tramp : nullptr, &ctx, &out.p);
        ctx.pending.rethrow();
        detail::check(st);
        return out.str();
    }

    uint32_t vocab_size() const {
        uint32_t n = 0;
        detail::check(rstar_model_vocab_size(m_, &n));
        return n;
    }

    const rstar_model *get() const noexcept { return m_; }

private:
    rstar_model *m_ = nullptr;
};

// What a caller's code runner reports for one program.
struct CodeResult {
    bool ok = false;
    std::string output;
    std::string error;
};

// How a Solver is made (rstar_solver_params). Empty strings mean "not set".
struct SolverOptions {
    std::string policy;  // empty: the default model (with its PPM and settings)
    std::string ppm;
    std::string config;  // JSON object or TOML text
    std::string device;  // "cpu", "cuda", "cuda:N"
    uint32_t precision = 0;
    uint32_t threads = 0;
    uint32_t executor_workers = 0;
    double step_timeout_s = 0;
    uint64_t step_memory_bytes = 0;
    bool annotation = false;  // RSTAR_SOLVER_MODE_ANNOTATION (needs policy)
    bool weak_sandbox = false;
    // Runs the steps' programs instead of the sandbox (called on a library thread, one at a time).
    std::function<CodeResult(std::string_view code, double timeout_s)> code_runner;
};

// One problem of Solver::run_problems: its position in its dataset (search seeds are keyed by
// it, so it gets the line run_dataset writes for it) and a problem-file record as JSON text
// ({"question", "answer"}, GSM8K's or MATH's own fields).
struct Problem {
    size_t index = 0;
    std::string record_json;
};

// One solved question.
struct Solution {
    std::string question;
    std::optional<std::string> answer;  // the PPM-best answer, if any
    std::string json;                   // the full result (trajectories, votes, stats)
};

// A policy (+ PPM) with a search configuration. Move-only.
class Solver {
public:
    explicit Solver(SolverOptions opts = {}) : runner_(std::make_unique<Runner>()) {
        runner_->f = std::move(opts.code_runner);
        auto p = detail::defaults(rstar_solver_default_params);
        p.policy = detail::opt_c(opts.policy);
        p.ppm = detail::opt_c(opts.ppm);
        p.config = detail::opt_c(opts.config);
        p.device = detail::opt_c(opts.device);
        p.precision = opts.precision;
        p.threads = opts.threads;
        p.executor_workers = opts.executor_workers;
        p.step_timeout_s = opts.step_timeout_s;
        p.step_memory_bytes = opts.step_memory_bytes;
        p.mode = opts.annotation ? RSTAR_SOLVER_MODE_ANNOTATION : RSTAR_SOLVER_MODE_INFERENCE;
        p.weak_sandbox = opts.weak_sandbox ? 1 : 0;
        if (runner_->f) {
            p.code_runner = &Solver::run_code;
            p.code_runner_user_data = runner_.get();
        }
        detail::check(rstar_solver_new_with_params(&p, &s_));
    }
    Solver(Solver &&o) noexcept : s_(std::exchange(o.s_, nullptr)), runner_(std::move(o.runner_)) {}
    Solver &operator=(Solver &&o) noexcept {
        if (this != &o) {
            rstar_solver_free(s_);
            s_ = std::exchange(o.s_, nullptr);
            runner_ = std::move(o.runner_);
        }
        return *this;
    }
    Solver(const Solver &) = delete;
    Solver &operator=(const Solver &) = delete;
    ~Solver() { rstar_solver_free(s_); }

    Solution solve(std::string_view question) {
        detail::OwnedString out;
        rstar_status st = rstar_solver_solve(s_, detail::z(question).c_str(), &out.p);
        runner_->pending.rethrow();
        detail::check(st);
        Solution sol;
        sol.question = std::string(question);
        sol.json = out.str();
        sol.answer = detail::JsonScan(sol.json).top_string("answer");
        return sol;
    }

    // Evaluates (inference) or annotates (annotation mode, resumable) a problem file; returns the
    // summary JSON. `progress` returning false cancels (rstar::Error, CANCELLED).
    std::string run_dataset(std::string_view data, std::string_view out = {}, size_t limit = 0,
                            std::function<bool(const rstar_solver_progress &)> progress = {}) {
        using Ctx = detail::Callback<std::function<bool(const rstar_solver_progress &)>>;
        Ctx ctx{&progress, {}};
        auto tramp = [](const rstar_solver_progress *p, void *user) -> bool {
            return Ctx::call(user, *p);
        };
        std::string out_z(out);
        detail::OwnedString summary;
        rstar_status st = rstar_solver_run_dataset(s_, detail::z(data).c_str(), limit,
                                                   detail::opt_c(out_z), progress ? +tramp : nullptr,
                                                   &ctx, &summary.p);
        ctx.pending.rethrow();
        runner_->pending.rethrow();
        detail::check(st);
        return summary.str();
    }

    // The output lines (JSON text, no newline) of `problems`, searched together, in order, for a
    // caller that writes the output file itself: in annotation mode the tree records run_dataset
    // appends, in inference mode its per-problem results. A bad problem is rstar::Error FORMAT
    // naming it; cancel() from another thread stops the call (rstar::Error CANCELLED).
    std::vector<std::string> run_problems(const std::vector<Problem> &problems) {
        std::string json = "[";
        for (const Problem &p : problems) {
            if (json.size() > 1) json += ',';
            json += "{\"index\":" + std::to_string(p.index) + ",\"problem\":" + p.record_json + '}';
        }
        json += ']';
        detail::OwnedString out;
        rstar_status st = rstar_solver_run_problems(s_, json.c_str(), &out.p);
        runner_->pending.rethrow();
        detail::check(st);
        std::vector<std::string> lines;
        std::string text = out.str();
        for (size_t at = 0, nl; at < text.size(); at = nl + 1) {
            nl = text.find('\n', at);
            if (nl == std::string::npos) nl = text.size();
            lines.push_back(text.substr(at, nl - at));
        }
        return lines;
    }

    // Stops the running (or the next) solve/run_dataset/run_problems; any thread.
    void cancel() noexcept { rstar_solver_cancel(s_); }

    rstar_solver *get() noexcept { return s_; }

private:
    struct Runner {
        std::function<CodeResult(std::string_view, double)> f;
        detail::Pending pending;
    };
    static void run_code(const char *code, size_t len, double timeout_s, rstar_code_result *result,
                         void *user) noexcept {
        auto *r = static_cast<Runner *>(user);
        try {
            CodeResult c = r->f(std::string_view(code, len), timeout_s);
            rstar_code_result_set(result, c.ok, c.output.c_str(),
                                  c.ok && c.error.empty() ? nullptr : c.error.c_str());
        } catch (...) {
            if (!r->pending.error) r->pending.error = std::current_exception();
        }
    }
    rstar_solver *s_ = nullptr;
    std::unique_ptr<Runner> runner_;
};

// Whether a predicted answer equals the reference answer (rstar_grade).
inline bool grade(std::string_view pred, std::string_view answer) {
    bool eq = false;
    detail::check(rstar_grade(detail::z(pred).c_str(), detail::z(answer).c_str(), &eq));
    return eq;
}

// The final answer in a solution text (\boxed{...} or "The answer is ..."), if any.
inline std::optional<std::string> extract_answer(std::string_view text) {
    detail::OwnedString out;
    detail::check(rstar_extract_answer(detail::z(text).c_str(), &out.p));
    if (!out.p) return std::nullopt;
    return out.str();
}

// Runs one Python program in the sandbox; the result JSON ({"ok", "output", "error", ...}).
inline std::string exec(std::string_view code, double timeout_s = 10.0, bool weak_sandbox = false) {
    auto p = detail::defaults(rstar_exec_default_params);
    p.timeout_s = timeout_s;
    p.weak_sandbox = weak_sandbox ? 1 : 0;
    detail::OwnedString out;
    detail::check(rstar_exec(detail::z(code).c_str(), &p, &out.p));
    return out.str();
}

// The arguments of `rstar evolve` (rstar_evolve_params); policy, data and workdir are required,
// other empty strings mean "not set".
struct EvolveOptions {
    std::string policy;       // base policy model directory
    std::string data;         // training problems (JSON list, {"example": [...]} or JSONL)
    std::string eval_data;    // held-out problems; empty: the last `holdout` fraction of data
    std::string replay_data;  // SFT examples mixed into every round
    std::string workdir;      // round-N/ stages and rounds.json; a rerun resumes
    uint32_t rounds = 2;
    std::string config;  // JSON object of `rstar evolve --config` keys
    uint32_t precision = 0;  // search stages: 0 exact, 1 fast (training is f32)
    uint32_t threads = 0;    // 0 = one per core
};

// Runs (or resumes, in opts.workdir) self-evolution rounds as `rstar evolve` does: MCTS
// synthesis, extraction, policy SFT, PPM training, evaluation. `progress` sees every event
// (kind RSTAR_EVOLVE_EVENT_*, round, stage RSTAR_EVOLVE_STAGE_*, ...; valid during the call);
// returning false (or throwing, rethrown here) stops the run at that event with rstar::Error
// CANCELLED, and calling again with the same workdir resumes. Returns the per-round table as a
// JSON array (the content of workdir/rounds.json).
inline std::string evolve(const EvolveOptions &opts,
                          std::function<bool(const rstar_evolve_event &)> progress = {}) {
    auto p = detail::defaults(rstar_evolve_default_params);
    p.policy = opts.policy.c_str();
    p.data = opts.data.c_str();
    p.eval_data = detail::opt_c(opts.eval_data);
    p.replay_data = detail::opt_c(opts.replay_data);
    p.workdir = opts.workdir.c_str();
    p.rounds = opts.rounds;
    p.config = detail::opt_c(opts.config);
    p.precision = opts.precision;
    p.threads = opts.threads;
    using Ctx = detail::Callback<std::function<bool(const rstar_evolve_event &)>>;
    Ctx ctx{&progress, {}};
    auto tramp = [](const rstar_evolve_event *e, void *user) -> bool { return Ctx::call(user, *e); };
    detail::OwnedString rows;
    rstar_status st = rstar_evolve_run(&p, progress ? +tramp : nullptr, &ctx, &rows.p);
    ctx.pending.rethrow();
    detail::check(st);
    return rows.str();
}

inline std::string version() { return rstar_version(); }

}  // namespace rstar

#endif  // RSTAR_HPP
