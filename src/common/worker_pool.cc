#include "common/worker_pool.h"

#include <algorithm>
#include <system_error>

namespace vix {

WorkerPool::WorkerPool(size_t max_threads, Pending on_destroy)
    : max_(std::max<size_t>(1, max_threads)), on_destroy_(on_destroy) {}

WorkerPool::~WorkerPool() {
  stop(on_destroy_);
}

Result<void> WorkerPool::start_all() {
  std::lock_guard lock(mu_);
  while (threads_.size() < max_) {
    try {
      threads_.emplace_back([this] { loop(); });
    } catch (const std::system_error& e) {
      return fail(VIX_E_DISK_SUBSYSTEM_INIT_FAIL,
                  std::string("cannot start worker threads: ") + e.what());
    }
  }
  return ok();
}

bool WorkerPool::submit(std::function<void()> job) {
  std::unique_lock lock(mu_);
  if (stopping_) return false;
  queue_.push_back(std::move(job));
  if (queue_.size() > idle_ && threads_.size() < max_) {
    try {
      threads_.emplace_back([this] { loop(); });
    } catch (const std::system_error&) {
      // No new thread: the existing ones get to it, or the job runs below.
    }
  }
  if (threads_.empty()) {
    std::function<void()> inline_job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    inline_job();
    return true;
  }
  lock.unlock();
  cv_.notify_one();
  return true;
}

void WorkerPool::stop(Pending pending) {
  std::deque<std::function<void()>> dropped;
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (pending == Pending::kDrop) dropped.swap(queue_);
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (std::thread& t : threads) t.join();
  // Dropped jobs' captures die here, outside the lock.
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(mu_);
  return threads_.size();
}

void WorkerPool::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (queue_.empty()) return;  // stopping, and nothing left to run
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      job();
    } catch (...) {
      // Jobs report their own errors through their completions; nothing may escape a worker.
    }
    job = nullptr;  // its captures die outside the lock
    lock.lock();
  }
}

}  // namespace vix
