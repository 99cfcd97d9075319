// WorkerPool: the one thread pool of vixfs. The library's async I/O (Read/WriteAsync), the
// read-ahead cache's prefetchers and the nbd transport's per-connection pieces each own one, sized
// for their work: a shared pool would let a slow prefetch hold back an unrelated disk's
// completion. Threads start on demand up to a maximum, so a pool that never gets work costs
// nothing.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/result.h"

namespace vix {

class WorkerPool {
 public:
  // What stop() does with jobs still queued.
  enum class Pending { kRun, kDrop };

  // max_threads >= 1; `on_destroy` is what the destructor does with queued jobs.
  explicit WorkerPool(size_t max_threads, Pending on_destroy = Pending::kRun);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Starts every thread now, so that a failure shows at start-up, not at the first job.
  Result<void> start_all();
  // Queues job. False, and the job is dropped, once stop has begun. When no thread exists and none
  // can be started, the job runs on the caller before submit returns.
  bool submit(std::function<void()> job);
  // Stops accepting jobs, runs or drops the queued ones, and joins every thread. Idempotent.
  void stop(Pending pending);
  size_t threads() const;

 private:
  void loop();

  const size_t max_;
  const Pending on_destroy_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace vix
