#include "runtime/dist/mpi_exchange.h"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace kiln::dist {

namespace {

using Clock = std::chrono::steady_clock;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <>
MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

// Posted requests and the peer each one waits on.
struct Pending {
  std::vector<MPI_Request> requests;
  std::vector<int> peers;
  void add(MPI_Request r, int peer) { requests.push_back(r), peers.push_back(peer); }
};

class MpiExchange final : public Exchange {
 public:
  MpiExchange(double timeout) : timeout_(timeout) {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    // Errors come back as codes (a dead peer's connection): we name the peer and end the job.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiExchange() override {
    MPI_Comm_free(&comm_);
    MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }

  void sum_in_rank_order(std::span<float> data, const std::string& what) override { sum(data, what, float_tmp_); }
  void sum_in_rank_order(std::span<double> data, const std::string& what) override { sum(data, what, double_tmp_); }

  std::vector<std::vector<uint8_t>> all_gather(std::span<const uint8_t> mine, const std::string& what) override {
    std::vector<int64_t> sizes(static_cast<size_t>(size_));
    const int64_t my_size = static_cast<int64_t>(mine.size());
    int tag = next_tag();
    Pending p;
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      p.add(irecv(&sizes[static_cast<size_t>(r)], 1, MPI_INT64_T, r, tag, what), r);
      p.add(isend(&my_size, 1, MPI_INT64_T, r, tag, what), r);
    }
    wait(p, what);
    std::vector<std::vector<uint8_t>> out(static_cast<size_t>(size_));
    out[static_cast<size_t>(rank_)].assign(mine.begin(), mine.end());
    tag = next_tag();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      auto& buf = out[static_cast<size_t>(r)];
      buf.resize(static_cast<size_t>(sizes[static_cast<size_t>(r)]));
      p.add(irecv(buf.data(), static_cast<int>(buf.size()), MPI_BYTE, r, tag, what), r);
      p.add(isend(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, r, tag, what), r);
    }
    wait(p, what);
    return out;
  }

  void broadcast(std::span<uint8_t> data, const std::string& what) override {
    int tag = next_tag();
    Pending p;
    if (rank_ == 0) {
      for (int r = 1; r < size_; ++r) p.add(isend(data.data(), static_cast<int>(data.size()), MPI_BYTE, r, tag, what), r);
    } else {
      p.add(irecv(data.data(), static_cast<int>(data.size()), MPI_BYTE, 0, tag, what), 0);
    }
    wait(p, what);
  }

  // Whether every request of `p` completed (testing each once); throws
  // PeerError naming the peer whose request failed.
  bool test(Pending& p, const std::string& what) {
    bool done = true;
    for (size_t i = 0; i < p.requests.size(); ++i) {
      if (p.requests[i] == MPI_REQUEST_NULL) continue;
      int flag = 0;
      int rc = MPI_Test(&p.requests[i], &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS)
        throw PeerError("rank " + std::to_string(rank_) + ": exchange with rank " + std::to_string(p.peers[i]) +
                            " failed during " + what + ": " + mpi_error_text(rc) + " (did rank " +
                            std::to_string(p.peers[i]) + " die?)",
                        p.peers[i]);
      done = done && flag;
    }
    if (done) p.requests.clear(), p.peers.clear();
    return done;
  }

  // Polls until `done()` says so; throws PeerError naming the first peer
  // `p` still waits on at the deadline.
  template <class Done>
  void poll_until(Done&& done, Pending& p, const std::string& what, double timeout = -1) {
    const double limit = timeout >= 0 ? timeout : timeout_;
    const auto deadline = Clock::now() + std::chrono::duration<double>(limit);
    for (int polls = 0; !done(); ++polls) {
      if (Clock::now() > deadline) {
        int silent = -1;
        for (size_t i = 0; i < p.requests.size() && silent < 0; ++i)
          if (p.requests[i] != MPI_REQUEST_NULL) silent = p.peers[i];
        const std::string who = silent >= 0 ? "rank " + std::to_string(silent) : "a rank of this node";
        throw PeerError("rank " + std::to_string(rank_) + ": " + who + " did not answer within " +
                            std::to_string(static_cast<int>(limit)) + " s during " + what +
                            " (it died, is stopped or is unreachable; --comm-timeout sets the limit)",
                        silent);
      }
      // Spin briefly (an answer is usually microseconds away), then yield the core.
      if (polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(polls > 20000 ? 500 : 20));
    }
  }

  void wait(Pending& p, const std::string& what, double timeout = -1) {
    poll_until([&] { return test(p, what); }, p, what, timeout);
  }

  int start_sum(std::span<float> data, const std::string& what) override {
    int handle = 0;
    while (handle < static_cast<int>(sums_.size()) && sums_[static_cast<size_t>(handle)].active) ++handle;
    if (handle == static_cast<int>(sums_.size())) sums_.emplace_back();
    AsyncSum& a = sums_[static_cast<size_t>(handle)];
    a.active = true;
    a.data = data;
    a.what = what;
    a.phase = 1;
    a.tag1 = next_tag();
    a.tag2 = next_tag();
    post_reduce_scatter(a);
    return handle;
  }
  void progress() override {
    for (AsyncSum& a : sums_)
      if (a.active) advance(a);
  }
  void finish_sum(int handle) override {
    AsyncSum& a = sums_.at(static_cast<size_t>(handle));
    poll_until([&] { return advance(a); }, a.pending, a.what);
    a.active = false;
  }

 private:
  int next_tag() { return tag_ = tag_ % 30000 + 1; }  // MPI guarantees tags up to 32767

  MPI_Request isend(const void* buf, int count, MPI_Datatype type, int peer, int tag, const std::string& what) {
    MPI_Request r;
    check(MPI_Isend(buf, count, type, peer, tag, comm_, &r), peer, what);
    return r;
  }
  MPI_Request irecv(void* buf, int count, MPI_Datatype type, int peer, int tag, const std::string& what) {
    MPI_Request r;
    check(MPI_Irecv(buf, count, type, peer, tag, comm_, &r), peer, what);
    return r;
  }
  void check(int rc, int peer, const std::string& what) {
    if (rc != MPI_SUCCESS)
      throw PeerError("rank " + std::to_string(rank_) + ": posting a message to rank " + std::to_string(peer) +
                          " failed during " + what + ": " + mpi_error_text(rc),
                      peer);
  }

  // A float sum in flight: phase 1 = every rank's copy of my chunk arriving
  // (reduce-scatter), phase 2 = the summed chunks arriving (all-gather).
  struct AsyncSum {
    bool active = false;
    std::span<float> data;
    std::string what;
    int phase = 0, tag1 = 0, tag2 = 0;
    Pending pending;
    std::vector<float> tmp;
  };

  int64_t chunk_begin(int64_t n, int j) const { return n * j / size_; }

  template <class T>
  void post_chunks_out(std::span<T> data, std::vector<T>& tmp, int tag, Pending& p, const std::string& what) {
    const int64_t n = static_cast<int64_t>(data.size());
    const int64_t mine = chunk_begin(n, rank_ + 1) - chunk_begin(n, rank_);
    tmp.resize(static_cast<size_t>(mine * size_));
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      p.add(irecv(tmp.data() + r * mine, static_cast<int>(mine), mpi_type<T>(), r, tag, what), r);
      p.add(isend(data.data() + chunk_begin(n, r), static_cast<int>(chunk_begin(n, r + 1) - chunk_begin(n, r)),
                  mpi_type<T>(), r, tag, what),
            r);
    }
  }
  // My chunk summed in rank order, then sent to every rank while theirs come in.
  template <class T>
  void sum_mine_and_post_gather(std::span<T> data, std::vector<T>& tmp, int tag, Pending& p, const std::string& what) {
    const int64_t n = static_cast<int64_t>(data.size());
    const int64_t lo = chunk_begin(n, rank_), mine = chunk_begin(n, rank_ + 1) - lo;
    std::vector<const T*> parts;
    for (int r = 0; r < size_; ++r) parts.push_back(r == rank_ ? data.data() + lo : tmp.data() + r * mine);
    sum_parts_in_order(parts, data.data() + lo, mine);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      p.add(irecv(data.data() + chunk_begin(n, r), static_cast<int>(chunk_begin(n, r + 1) - chunk_begin(n, r)),
                  mpi_type<T>(), r, tag, what),
            r);
      p.add(isend(data.data() + lo, static_cast<int>(mine), mpi_type<T>(), r, tag, what), r);
    }
  }

  void post_reduce_scatter(AsyncSum& a) {
    if (size_ > 1) post_chunks_out(a.data, a.tmp, a.tag1, a.pending, a.what);
  }
  // Moves a sum on without blocking; true when it is complete.
  bool advance(AsyncSum& a) {
    if (size_ == 1) return true;
    if (!test(a.pending, a.what)) return false;
    if (a.phase == 1) {
      sum_mine_and_post_gather(a.data, a.tmp, a.tag2, a.pending, a.what);
      a.phase = 2;
      return false;
    }
    return true;
  }

  template <class T>
  void sum(std::span<T> data, const std::string& what, std::vector<T>& tmp) {
    if (size_ == 1) return;
    Pending p;
    post_chunks_out(data, tmp, next_tag(), p, what);
    wait(p, what);
    sum_mine_and_post_gather(data, tmp, next_tag(), p, what);
    wait(p, what);
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, tag_ = 0;
  double timeout_;
  std::vector<float> float_tmp_;
  std::vector<double> double_tmp_;
  std::vector<AsyncSum> sums_;  // started sums (reused once finished)
};

MPI_Comm g_node_comm = MPI_COMM_NULL;

}  // namespace

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

std::unique_ptr<Exchange> mpi_world(int* argc, char*** argv, double timeout_seconds) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  }
  return std::make_unique<MpiExchange>(timeout_seconds);
}

std::pair<int, int> node_local_rank(Exchange& world) {
  auto& mx = dynamic_cast<MpiExchange&>(world);
  if (g_node_comm == MPI_COMM_NULL) {
    MPI_Comm_split_type(mx.comm(), MPI_COMM_TYPE_SHARED, mx.rank(), MPI_INFO_NULL, &g_node_comm);
    MPI_Comm_set_errhandler(g_node_comm, MPI_ERRORS_RETURN);
  }
  int r = 0, n = 1;
  MPI_Comm_rank(g_node_comm, &r);
  MPI_Comm_size(g_node_comm, &n);
  return {r, n};
}

void node_barrier(Exchange& world, const std::string& what, double timeout_seconds) {
  auto& mx = dynamic_cast<MpiExchange&>(world);
  node_local_rank(world);
  MPI_Request r;
  MPI_Ibarrier(g_node_comm, &r);
  Pending p;
  p.add(r, -1);
  mx.wait(p, what, timeout_seconds);
}

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  // Before MPI starts (a bad flag or spec, seen by every rank alike) a plain exit is enough.
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace kiln::dist
