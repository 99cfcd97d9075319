// Result<T>: a value or a vix::Error (a VixError code plus a message that names what failed).
// Errors are values everywhere inside vixfs; no exception crosses a layer boundary.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "vixDiskLib.h"

namespace vix {

struct Error {
  VixError code = VIX_E_FAIL;
  std::string message;  // what failed and why, e.g. "disk.vmdk: grain table 3 points past EOF"
};

// Builds an Error; the usual way to fail: `return fail(VIX_E_DISK_INVAL, "x: bad magic")`.
inline Error fail(VixError code, std::string message) {
  return Error{code, std::move(message)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> ok() {
  return {};
}

}  // namespace vix

#define VIX_CONCAT_INNER_(a, b) a##b
#define VIX_CONCAT_(a, b) VIX_CONCAT_INNER_(a, b)

// Returns the error of `expr` (a Result) from the enclosing function.
#define VIX_TRY(expr)                                                     \
  do {                                                                    \
    auto&& vix_try_result_ = (expr);                                      \
    if (!vix_try_result_.ok()) return std::move(vix_try_result_).error(); \
  } while (0)

// `VIX_ASSIGN_OR_RETURN(auto x, f());` declares x from a successful Result or returns its error.
#define VIX_ASSIGN_OR_RETURN(lhs, expr) \
  VIX_ASSIGN_OR_RETURN_IMPL_(VIX_CONCAT_(vix_result_, __LINE__), lhs, expr)
#define VIX_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).error();    \
  lhs = std::move(tmp).value()
