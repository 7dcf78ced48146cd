// A C ABI over LEMON's min-cost-flow solvers (NetworkSimplex, CostScaling), so that .NET can use LEMON as an
// independent peer for src/Reference/Flow/MinCostFlow.cs. Plain arrays in, plain arrays out; no exception crosses
// the boundary.
//
// Problem (x the flow; b the supply, negative for a demand):
//   minimize sum_a cost[a] x[a]
//   subject to sum_{a leaves v} x[a] - sum_{a enters v} x[a] = b(v),   lower[a] <= x[a] <= cap[a].
// The supplies must sum to zero (LEMON's GEQ/LEQ relaxations are not exposed); otherwise RL_UNBALANCED is returned
// and LEMON is not called.

#include <lemon/config.h>
#include <lemon/cost_scaling.h>
#include <lemon/network_simplex.h>
#include <lemon/smart_graph.h>

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <vector>

#define RL_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// Status codes (keep in step with Lemon.cs).
const int RL_OPTIMAL = 0;
const int RL_INFEASIBLE = 1;
const int RL_UNBOUNDED = 2;
const int RL_UNBALANCED = 3;
const int RL_BAD_ARGUMENT = -1;
const int RL_EXCEPTION = -2;
const int RL_CRASHED = -3;
const int RL_TIMED_OUT = -4;

// How long an isolated solver may run before it is killed (rl_set_isolation_timeout_ms changes it).
int g_isolation_timeout_ms = 120000;

// Algorithm codes.
const int RL_NETWORK_SIMPLEX = 0;
const int RL_COST_SCALING = 1;

typedef lemon::SmartDigraph Graph;
typedef long long Int;

template <typename Solver, typename... RunArguments>
int solve(Solver& solver, const std::vector<Graph::Node>& nodes, const std::vector<Graph::Arc>& arcs,
          long long* flow_out, long long* potential_out, long long* cost_out, RunArguments... run_arguments) {
  typename Solver::ProblemType result = solver.run(run_arguments...);
  if (result == Solver::INFEASIBLE) return RL_INFEASIBLE;
  if (result == Solver::UNBOUNDED) return RL_UNBOUNDED;
  if (flow_out != nullptr)
    for (size_t a = 0; a < arcs.size(); ++a) flow_out[a] = solver.flow(arcs[a]);
  if (potential_out != nullptr)
    for (size_t v = 0; v < nodes.size(); ++v) potential_out[v] = solver.potential(nodes[v]);
  if (cost_out != nullptr) *cost_out = solver.template totalCost<Int>();
  return RL_OPTIMAL;
}

// Runs `run(flow, potential, cost)` in a forked child process and copies its results back.
//
// Why: LEMON 1.3.1's CostScaling::priceRefinement() can index its bucket array past the end (the rank of a node is
// the sum of several bounded increments, each below the array size, but the sum is not checked). AddressSanitizer
// reports it as a heap-buffer-overflow on small random instances; unchecked, it corrupts the heap, crashes or loops.
// A peer must never take the caller's process down, so the solver runs in a child: a crash becomes RL_CRASHED,
// a hang RL_TIMED_OUT. Results travel through a shared anonymous mapping: [status, cost, flows[m], potentials[n]].
template <typename Run>
int isolated(int n, int m, long long* flow_out, long long* potential_out, long long* cost_out, Run run) {
  const size_t count = 2 + static_cast<size_t>(m) + static_cast<size_t>(n);
  const size_t bytes = count * sizeof(long long);
  void* shared = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return RL_EXCEPTION;
  long long* buffer = static_cast<long long*>(shared);
  buffer[0] = RL_EXCEPTION;

  pid_t child = fork();
  if (child < 0) {
    munmap(shared, bytes);
    return RL_EXCEPTION;
  }
  if (child == 0) {
    // The child: only this thread exists here. Give the fault signals back their default action (the parent's
    // runtime may have installed handlers that expect threads the child does not have), solve, publish, and leave
    // without running any destructor or atexit handler of the parent's runtime.
    const int fault_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP};
    for (int signal_number : fault_signals) ::signal(signal_number, SIG_DFL);
    int status = RL_EXCEPTION;
    try {
      status = run(buffer + 2, buffer + 2 + m, buffer + 1);
    } catch (...) {
      status = RL_EXCEPTION;
    }
    buffer[0] = status;
    _exit(0);
  }

  // The parent: poll for the child's exit until the deadline (waitpid has no timeout of its own).
  struct timespec started;
  clock_gettime(CLOCK_MONOTONIC, &started);
  int wait_status = 0;
  int result = RL_TIMED_OUT;
  long sleep_ns = 20000;  // 20 us, doubling up to 1 ms between polls
  for (;;) {
    pid_t done = waitpid(child, &wait_status, WNOHANG);
    if (done == child) {
      bool clean = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
      result = clean ? static_cast<int>(buffer[0]) : RL_CRASHED;
      break;
    }
    if (done < 0 && errno != EINTR) {  // someone else reaped the child: its results cannot be trusted
      result = RL_CRASHED;
      break;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long elapsed_ms = (now.tv_sec - started.tv_sec) * 1000LL + (now.tv_nsec - started.tv_nsec) / 1000000;
    if (elapsed_ms >= g_isolation_timeout_ms) {
      kill(child, SIGKILL);
      while (waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
      }
      result = RL_TIMED_OUT;
      break;
    }
    struct timespec pause = {0, sleep_ns};
    nanosleep(&pause, nullptr);
    if (sleep_ns < 1000000) sleep_ns *= 2;
  }

  if (result == RL_OPTIMAL) {
    if (cost_out != nullptr) *cost_out = buffer[1];
    if (flow_out != nullptr && m > 0) std::memcpy(flow_out, buffer + 2, sizeof(long long) * m);
    if (potential_out != nullptr && n > 0) std::memcpy(potential_out, buffer + 2 + m, sizeof(long long) * n);
  }
  munmap(shared, bytes);
  return result;
}

// Checks an answer in the caller's process before it is trusted: bounds, conservation, the total cost, and LEMON's
// own optimality certificate (cost + pi(tail) - pi(head) >= 0 on every residual arc). A solver that corrupted its
// heap may still exit cleanly; this catches a wrong answer from it. Exact in 128-bit arithmetic.
bool verified(int n, int m, const int* tail, const int* head, const long long* lower, const long long* cap,
              const long long* cost, const long long* supply, const long long* flow, const long long* pi,
              long long total_cost) {
  std::vector<__int128> net(n, 0);
  __int128 sum = 0;
  for (int a = 0; a < m; ++a) {
    long long low = lower != nullptr ? lower[a] : 0;
    if (flow[a] < low || flow[a] > cap[a]) return false;
    net[tail[a]] += flow[a];
    net[head[a]] -= flow[a];
    sum += static_cast<__int128>(flow[a]) * cost[a];
    __int128 reduced = static_cast<__int128>(cost[a]) + pi[tail[a]] - pi[head[a]];
    if (flow[a] < cap[a] && reduced < 0) return false;
    if (flow[a] > low && reduced > 0) return false;
  }
  for (int v = 0; v < n; ++v)
    if (net[v] != (supply != nullptr ? supply[v] : 0)) return false;
  return sum == total_cost;
}

}  // namespace

// Sets how long an isolated solver (CostScaling) may run before it is killed and RL_TIMED_OUT is returned.
// Milliseconds, at least 1; the default is 120000. Not thread-safe with respect to running solves.
RL_EXPORT void rl_set_isolation_timeout_ms(int milliseconds) {
  if (milliseconds >= 1) g_isolation_timeout_ms = milliseconds;
}

// Version of this shim's ABI; bump when a signature changes.
RL_EXPORT int rl_shim_version(void) { return 1; }

// The LEMON version the shim was compiled against, e.g. "1.3.1".
RL_EXPORT const char* rl_lemon_version(void) { return LEMON_VERSION; }

// Solves one min-cost-flow problem.
//   algorithm: 0 NetworkSimplex, 1 CostScaling.
//   n, m: node and arc counts; tail[m], head[m] in 0..n-1.
//   lower[m] (may be null: all 0), cap[m], cost[m], supply[n] (may be null: all 0).
//   flow_out[m], potential_out[n], cost_out[1]: written when optimal; each may be null.
//   LEMON's potentials pi satisfy cost + pi(tail) - pi(head) >= 0 on residual arcs (opposite sign to MinCostFlow's).
// Returns 0 OPTIMAL, 1 INFEASIBLE, 2 UNBOUNDED, 3 UNBALANCED (supplies do not sum to 0), -1 bad argument,
// -2 an exception inside LEMON (or no memory/process for isolation), -3 the isolated solver crashed or returned an
// answer that failed the shim's check (bounds, conservation, cost, LEMON's own dual certificate),
// -4 the isolated solver ran past the timeout (rl_set_isolation_timeout_ms, default 120 s) and was killed.
// NetworkSimplex runs in the calling process. CostScaling runs in a forked child process (see isolated()).
RL_EXPORT int rl_min_cost_flow(int algorithm, int n, int m, const int* tail, const int* head, const long long* lower,
                               const long long* cap, const long long* cost, const long long* supply,
                               long long* flow_out, long long* potential_out, long long* cost_out) {
  try {
    if (n < 0 || m < 0) return RL_BAD_ARGUMENT;
    if (m > 0 && (tail == nullptr || head == nullptr || cap == nullptr || cost == nullptr)) return RL_BAD_ARGUMENT;
    if (algorithm != RL_NETWORK_SIMPLEX && algorithm != RL_COST_SCALING) return RL_BAD_ARGUMENT;
    long long total = 0;
    if (supply != nullptr)
      for (int v = 0; v < n; ++v) {
        if (__builtin_add_overflow(total, supply[v], &total)) return RL_BAD_ARGUMENT;
      }
    if (total != 0) return RL_UNBALANCED;

    Graph graph;
    graph.reserveNode(n);
    graph.reserveArc(m);
    std::vector<Graph::Node> nodes(n);
    for (int v = 0; v < n; ++v) nodes[v] = graph.addNode();
    std::vector<Graph::Arc> arcs(m);
    for (int a = 0; a < m; ++a) {
      if (tail[a] < 0 || tail[a] >= n || head[a] < 0 || head[a] >= n) return RL_BAD_ARGUMENT;
      if (cap[a] < (lower != nullptr ? lower[a] : 0)) return RL_BAD_ARGUMENT;
      arcs[a] = graph.addArc(nodes[tail[a]], nodes[head[a]]);
    }
    Graph::ArcMap<Int> lowerMap(graph, 0), capMap(graph), costMap(graph);
    Graph::NodeMap<Int> supplyMap(graph, 0);
    for (int a = 0; a < m; ++a) {
      if (lower != nullptr) lowerMap[arcs[a]] = lower[a];
      capMap[arcs[a]] = cap[a];
      costMap[arcs[a]] = cost[a];
    }
    if (supply != nullptr)
      for (int v = 0; v < n; ++v) supplyMap[nodes[v]] = supply[v];

    if (algorithm == RL_NETWORK_SIMPLEX) {
      lemon::NetworkSimplex<Graph, Int, Int> solver(graph);
      solver.lowerMap(lowerMap).upperMap(capMap).costMap(costMap).supplyMap(supplyMap);
      return solve(solver, nodes, arcs, flow_out, potential_out, cost_out);
    } else {
      // Isolated in a child process: see isolated() above. The PUSH method hits the LEMON 1.3.1 overflow far less
      // often than the default PARTIAL_AUGMENT (both share priceRefinement, where the bug is).
      std::vector<long long> flow(m), potential(n);
      long long total_cost = 0;
      int status = isolated(n, m, flow.data(), potential.data(), &total_cost,
                            [&](long long* f, long long* p, long long* c) {
                              typedef lemon::CostScaling<Graph, Int, Int> Solver;
                              Solver solver(graph);
                              solver.lowerMap(lowerMap).upperMap(capMap).costMap(costMap).supplyMap(supplyMap);
                              return solve(solver, nodes, arcs, f, p, c, Solver::PUSH);
                            });
      if (status != RL_OPTIMAL) return status;
      if (!verified(n, m, tail, head, lower, cap, cost, supply, flow.data(), potential.data(), total_cost))
        return RL_CRASHED;
      if (flow_out != nullptr && m > 0) std::memcpy(flow_out, flow.data(), sizeof(long long) * m);
      if (potential_out != nullptr && n > 0) std::memcpy(potential_out, potential.data(), sizeof(long long) * n);
      if (cost_out != nullptr) *cost_out = total_cost;
      return RL_OPTIMAL;
    }
  } catch (...) {
    return RL_EXCEPTION;
  }
}
