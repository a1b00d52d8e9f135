// Test of bindings/cpp/rstar.hpp: built with g++ -std=c++17 -Wall -Wextra -Werror, plain and with
// -fsanitize=address,undefined (.ci/bindings.sh). Usage: test POLICY_DIR PPM_DIR CONFIG_FILE
// Solves the README question with the tiny model and checks the answer; checks errors, grading,
// extraction, generation with streaming, a C++ code runner, exceptions from callbacks, moves,
// run_problems against run_dataset's trees, and evolve (cancel, resume, events, rounds.json).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "rstar.hpp"

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::cerr << "CHECK failed at line " << __LINE__ << ": " #cond << std::endl; \
            std::exit(1);                                                             \
        }                                                                             \
    } while (0)

static const char *kQuestion =
    "A jacket costs $160. It is on sale for 25% off. What is the sale price in dollars?";

static std::string read_file(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

static std::vector<std::string> split_lines(const std::string &text) {
    std::vector<std::string> out;
    std::stringstream ss(text);
    for (std::string l; std::getline(ss, l);) out.push_back(l);
    return out;
}

static std::string no_space(std::string s) {
    s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return std::isspace((unsigned char)c); }),
            s.end());
    return s;
}

// run_problems gives, for a problem at position i, the very tree record run_dataset appends for
// it (batched or alone); a bad problem is FORMAT; cancel() from another thread stops it.
static void run_problems(const std::string &policy, const std::string &ppm) {
    std::vector<std::string> probs = split_lines(read_file(policy + "/../heldout.jsonl"));
    CHECK(probs.size() >= 3);
    probs.resize(3);
    {
        std::ofstream f("rstar_cpp_problems.jsonl");
        for (const auto &p : probs) f << p << "\n";
    }
    std::remove("rstar_cpp_trees.jsonl");
    rstar::SolverOptions o;
    o.policy = policy;
    o.ppm = ppm;
    o.config = R"({"rollouts": 2, "width": 2, "max_depth": 4, "max_step_tokens": 48})";
    o.annotation = true;
    o.executor_workers = 1;
    rstar::Solver s{o};
    s.run_dataset("rstar_cpp_problems.jsonl", "rstar_cpp_trees.jsonl");
    std::vector<std::string> ref = split_lines(read_file("rstar_cpp_trees.jsonl"));
    std::remove("rstar_cpp_problems.jsonl");
    std::remove("rstar_cpp_trees.jsonl");
    std::vector<rstar::Problem> batch;
    for (size_t i = 0; i < probs.size(); i++) batch.push_back({i, probs[i]});
    CHECK(ref.size() == 3 && s.run_problems(batch) == ref);
    CHECK(s.run_problems({batch[2]}) == std::vector<std::string>{ref[2]});
    try {
        s.run_problems({{0, R"({"question": "no answer"})"}});
        CHECK(false);
    } catch (const rstar::Error &e) {
        CHECK(e.status() == RSTAR_STATUS_FORMAT);
        CHECK(std::string(e.what()).find("problem 0") != std::string::npos);
    }
    std::atomic<bool> done{false};
    std::thread canceller([&] {
        while (!done) {
            s.cancel();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    rstar_status st = RSTAR_STATUS_OK;
    try {
        s.run_problems(batch);
    } catch (const rstar::Error &e) {
        st = e.status();
    }
    done = true;
    canceller.join();
    CHECK(st == RSTAR_STATUS_CANCELLED);
    std::cout << "run_problems: ok" << std::endl;
}

// evolve: a callback returning false cancels, one throwing rethrows, a rerun resumes (round 0's
// evaluation skipped) and returns rounds.json's rows, with every stage reported in order.
static void evolve(const std::string &policy) {
    {
        std::ofstream f("rstar_cpp_evolve.json");
        f << R"([{"question": "What is 6 times 7?", "answer": "42"},
                 {"question": "What is 2 plus 3?", "answer": "5"},
                 {"question": "What is 10 minus 4?", "answer": "6"}])";
    }
    rstar::EvolveOptions o;
    o.policy = policy;
    o.data = "rstar_cpp_evolve.json";
    o.workdir = "rstar_cpp_evolve";
    o.rounds = 1;
    o.threads = 2;
    o.config = R"({"mcts": {"rollouts": 2, "width": 2, "max_depth": 2, "max_step_tokens": 6},
        "round1_rollouts": 2, "batch": 2, "holdout": 0.34, "eval_ppm_rollouts": 1,
        "sft": {"max_steps": 1, "batch_size": 1, "seq_len": 1024},
        "ppm": {"max_steps": 1, "batch_size": 1, "seq_len": 1024}})";
    try {
        rstar::evolve(o, [](const rstar_evolve_event &e) {
            return !(e.kind == RSTAR_EVOLVE_EVENT_PROBLEMS && e.round == 1);
        });
        CHECK(false);
    } catch (const rstar::Error &e) {
        if (e.status() == RSTAR_STATUS_EXEC) {
            std::cout << "evolve: SKIPPED: " << e.what() << std::endl;
            return;
        }
        CHECK(e.status() == RSTAR_STATUS_CANCELLED);
    }
    try {
        rstar::evolve(o, [](const rstar_evolve_event &) -> bool { throw std::runtime_error("stop"); });
        CHECK(false);
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()) == "stop");
    }
    std::string stages, round_rows;
    bool first_skipped = false;
    std::string rows = rstar::evolve(o, [&](const rstar_evolve_event &e) {
        if (e.kind == RSTAR_EVOLVE_EVENT_STAGE) {
            if (stages.empty()) first_skipped = e.skipped;
            stages += std::to_string(e.stage);
        }
        if (e.kind == RSTAR_EVOLVE_EVENT_ROUND) round_rows += std::string(round_rows.empty() ? "" : ",") + e.round_json;
        return true;
    });
    std::string file = read_file("rstar_cpp_evolve/rounds.json");
    std::filesystem::remove_all("rstar_cpp_evolve");
    std::remove("rstar_cpp_evolve.json");
    CHECK(stages == "401234" && first_skipped);  // eval (round 0), mcts, extract, sft, ppm, eval
    CHECK(!rows.empty() && no_space(rows) == no_space(file));
    CHECK(no_space(rows) == "[" + no_space(round_rows) + "]");
    std::cout << "evolve: ok" << std::endl;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " POLICY_DIR PPM_DIR CONFIG_FILE\n";
        return 2;
    }
    const std::string policy = argv[1], ppm = argv[2], config = read_file(argv[3]);

    // Errors carry the status and the library's message.
    try {
        rstar::Model bad{"/nonexistent/model"};
        CHECK(false);
    } catch (const rstar::Error &e) {
        CHECK(e.status() == RSTAR_STATUS_IO || e.status() == RSTAR_STATUS_INVALID_ARGUMENT ||
              e.status() == RSTAR_STATUS_FORMAT);
        CHECK(std::string(e.what()).find("nonexistent") != std::string::npos);
    }
    CHECK(rstar::grade("\\frac{1}{2}", "0.5"));
    CHECK(!rstar::grade("121", "120"));
    CHECK(rstar::extract_answer("so \\boxed{120}.") == std::optional<std::string>("120"));
    CHECK(!rstar::extract_answer("nothing"));

    // Generation with streaming; a callback's exception comes back out of the call.
    rstar::Model m{policy};
    rstar::GenerateOptions g;
    g.max_new_tokens = 8;
    std::string streamed;
    g.on_text = [&](std::string_view t) {
        streamed += t;
        return true;
    };
    std::string text = m.generate("What is 2 + 2?", g);
    CHECK(text == streamed);
    rstar::Model moved = std::move(m);
    g.on_text = [](std::string_view) -> bool { throw std::runtime_error("from the callback"); };
    try {
        moved.generate("What is 2 + 2?", g);
        CHECK(false);
    } catch (const std::runtime_error &e) {
        CHECK(std::string(e.what()) == "from the callback");
    }

    // The README question with the tiny model's search settings.
    rstar::SolverOptions o;
    o.policy = policy;
    o.ppm = ppm;
    o.config = config;
    o.executor_workers = 2;
    rstar::Solver s{o};
    rstar::Solution sol = s.solve(kQuestion);
    std::cout << "answer: " << sol.answer.value_or("(none)") << std::endl;
    CHECK(sol.answer && rstar::grade(*sol.answer, "120"));

    // A C++ code runner (python3 through a temp file), as an app without the sandbox would.
    std::atomic<int> calls{0};
    rstar::SolverOptions r = o;
    r.code_runner = [&](std::string_view code, double) {
        ++calls;
        {
            std::ofstream f("rstar_cpp_step.py");
            f << code;
        }
        rstar::CodeResult res;
        FILE *p = popen("python3 rstar_cpp_step.py 2>&1", "r");
        if (!p) return res;
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) res.output.append(buf, n);
        res.ok = pclose(p) == 0;
        if (!res.ok) res.error = res.output;
        return res;
    };
    rstar::Solver custom{r};
    rstar::Solution sol2 = custom.solve(kQuestion);
    std::remove("rstar_cpp_step.py");
    CHECK(calls > 0);
    std::cout << "code runner: " << calls << " calls, answer " << sol2.answer.value_or("(none)")
              << std::endl;

    // Cancel from another thread: the solve throws CANCELLED.
    rstar::Solver moved_solver = std::move(s);
    std::atomic<bool> done{false};
    std::thread canceller([&] {
        while (!done) {
            moved_solver.cancel();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    });
    try {
        moved_solver.solve(kQuestion);
        done = true;
        canceller.join();
        CHECK(false);
    } catch (const rstar::Error &e) {
        done = true;
        canceller.join();
        CHECK(e.status() == RSTAR_STATUS_CANCELLED);
    }
    run_problems(policy, ppm);
    evolve(policy);
    std::cout << "cpp: ok" << std::endl;
    return 0;
}
