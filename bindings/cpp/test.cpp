// Test of bindings/cpp/rstar.hpp: built with g++ -std=c++17 -Wall -Wextra -Werror, plain and with
// -fsanitize=address,undefined (.ci/bindings.sh). Usage: test POLICY_DIR PPM_DIR CONFIG_FILE
// Solves the README question with the tiny model and checks the answer; checks errors, grading,
// extraction, generation with streaming, a C++ code runner, exceptions from callbacks, moves.
#include <atomic>
#include <cstdio>
#include <cstdlib>
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

static std::string read_file(const char *path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
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
    std::cout << "cpp: ok" << std::endl;
    return 0;
}
