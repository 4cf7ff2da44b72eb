// fourierft/util/atomic_file.hpp — write_file_atomically(): every output file of fourierft is written
// to `<path>.tmp.<pid>`, flushed to disk, then renamed over `path`, so readers never see half a file.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

#include "fourierft/core/error.hpp"

namespace fourierft::util {

namespace detail {
// fsync(2) on a path: makes the file's data (or a directory's entries) durable. Returns errno or 0.
inline int fsync_path(const std::filesystem::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}
}  // namespace detail

// Writes `path` through `write(out)`: the callback streams the content to `<path>.tmp.<pid>`, which
// is flushed, fsync'ed and renamed over `path` (atomic on POSIX: readers see the old file or the
// new one). If anything fails — the callback throws, the disk is full, the rename is refused — the
// temporary file is removed and `path` is left as it was. I/O failures throw IoError naming `path`;
// an exception thrown by the callback propagates unchanged.
inline void write_file_atomically(const std::filesystem::path& path,
                                  const std::function<void(std::ostream&)>& write) {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& what) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw IoError(str_cat("cannot write '", path.string(), "': ", what));
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(str_cat("cannot create '", tmp.string(), "': ", std::strerror(errno)));
    try {
      write(out);
    } catch (...) {
      out.close();
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw;
    }
    out.flush();
    if (!out) fail(str_cat("writing '", tmp.string(), "' failed (disk full?)"));
    out.close();
    if (!out) fail(str_cat("closing '", tmp.string(), "' failed"));
  }
  if (const int err = detail::fsync_path(tmp, false); err != 0)
    fail(str_cat("fsync of '", tmp.string(), "' failed: ", std::strerror(err)));
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail(str_cat("renaming '", tmp.string(), "' failed: ", std::strerror(errno)));
  // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
  const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  (void)detail::fsync_path(dir, true);
}

// The same for content already in memory.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}
inline void write_file_atomically(const std::filesystem::path& path,
                                  std::span<const std::byte> bytes) {
  write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// Copies the file `from` to `to` the same way (a merged model's tokenizer files): `to` is the old
// file or a whole copy. IoError naming `from` if it cannot be read.
inline void copy_file_atomically(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw IoError(str_cat("cannot read '", from.string(), "' (to copy it to '", to.string(), "')"));
  write_file_atomically(to, [&](std::ostream& out) {
    out << in.rdbuf();
    if (in.bad()) throw IoError(str_cat("reading '", from.string(), "' failed"));
  });
}

}  // namespace fourierft::util
