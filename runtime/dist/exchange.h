#pragma once
// What data-parallel training needs from the ranks of a job, independent of
// the transport: sums that come out bit-identical on every rank (each
// element summed in rank order, ((r0 + r1) + r2) + ..., whatever the
// transport's own reduction algorithm would do), a gather to rank 0 and a
// broadcast from it. Every call is collective: all ranks make the same calls
// in the same order. Each has a deadline; a rank that does not answer in
// time (dead, stopped, partitioned) raises PeerError naming it.
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::dist {

// A peer failed or stopped answering; `rank` is the peer (-1: unknown).
struct PeerError : std::runtime_error {
  PeerError(const std::string& what, int rank) : std::runtime_error(what), rank(rank) {}
  int rank;
};

class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[i] = sum over ranks r = 0..size-1, in that order, of rank r's data[i].
  // `what` names the exchange in errors ("gradient bucket 2 of 5").
  virtual void sum_in_rank_order(std::span<float> data, const std::string& what) = 0;
  virtual void sum_in_rank_order(std::span<double> data, const std::string& what) = 0;
  // The same sum without waiting: start_sum posts it and returns a handle,
  // progress() moves every started sum on as far as it can without blocking,
  // finish_sum() waits for one (with the deadline). Every rank starts its
  // sums in the same order; `data` must stay put until finished.
  virtual int start_sum(std::span<float> data, const std::string& what) = 0;
  virtual void progress() = 0;
  virtual void finish_sum(int handle) = 0;
  // Every rank's bytes, in rank order (each rank may contribute a different count).
  virtual std::vector<std::vector<uint8_t>> all_gather(std::span<const uint8_t> mine, const std::string& what) = 0;
  // Rank 0's bytes to every rank (`data` sized alike everywhere).
  virtual void broadcast(std::span<uint8_t> data, const std::string& what) = 0;
};

// The order-fixed sum both the transport and the single-process reference
// use: acc = parts[0]; acc += parts[1]; ... element by element.
template <class T>
void sum_parts_in_order(const std::vector<const T*>& parts, T* out, int64_t n) {
  if (parts.empty()) return;
  for (int64_t i = 0; i < n; ++i) {
    T acc = parts[0][i];
    for (size_t r = 1; r < parts.size(); ++r) acc += parts[r][i];
    out[i] = acc;
  }
}

}  // namespace kiln::dist
