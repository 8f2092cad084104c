# mp_read_verified() (shared with the task runtime): a blob file is read
# only while its stat equals the stamp the engine verified it under.

stamp_of <- function(path) {
  fi <- file.info(path, extra_cols = FALSE)
  list(size = fi$size, mtime = as.numeric(fi$mtime), ctime = as.numeric(fi$ctime))
}

test_that("a file read while it has its stamp gives its value", {
  f <- tempfile(fileext = ".mpk")
  on.exit(unlink(f))
  mp_write(1:10, f)
  expect_identical(mp_read_verified(f, stamp_of(f), "artifact 'x' of F/1/start/1"), 1:10)
  # The client's form: seconds + nanoseconds.
  fi <- file.info(f)
  secs <- floor(as.numeric(fi$mtime))
  st <- client_stamp(list(size = fi$size,
                          mtime_sec = secs, mtime_nsec = round((as.numeric(fi$mtime) - secs) * 1e9),
                          ctime_sec = floor(as.numeric(fi$ctime)),
                          ctime_nsec = round((as.numeric(fi$ctime) - floor(as.numeric(fi$ctime))) * 1e9)))
  expect_identical(mp_read_verified(f, st, "x"), 1:10)
  expect_null(client_stamp(NULL))
})

test_that("a file changed after its stamp is not read, and the error names the artifact", {
  f <- tempfile(fileext = ".mpk")
  on.exit(unlink(f))
  mp_write(as.numeric(1:10), f)
  st <- stamp_of(f)
  # One byte flipped in place: same size, and the value would decode.
  b <- readBin(f, "raw", file.size(f))
  b[length(b)] <- xor(b[length(b)], as.raw(1))
  Sys.sleep(0.02)  # past the timestamp granularity of kernels without fine-grained ctimes
  con <- file(f, "r+b")
  writeBin(b, con)
  close(con)
  expect_false(identical(mp_read(f), as.numeric(1:10)))
  expect_error(mp_read_verified(f, st, "artifact 'x' of F/1/start/1"),
               "artifact 'x' of F/1/start/1 changed after it was verified.*no longer has the size and times.*not read")
  # Gone, or never stamped.
  unlink(f)
  expect_error(mp_read_verified(f, st, "artifact 'x' of F/1/start/1"), "artifact 'x' of F/1/start/1 .* is missing")
  expect_error(mp_read_verified(f, NULL, "artifact 'y' of F/1/a/2"),
               "artifact 'y' of F/1/a/2 was not verified against its content address")
})

test_that("the tolerance tells apart times 2 microseconds apart", {
  f <- tempfile()
  on.exit(unlink(f))
  writeLines("x", f)
  st <- stamp_of(f)
  expect_null(mp_stamp_differs(f, st))
  expect_null(mp_stamp_differs(f, modifyList(st, list(ctime = st$ctime + 5e-7))))
  expect_match(mp_stamp_differs(f, modifyList(st, list(ctime = st$ctime + 2e-6))), "no longer")
  expect_match(mp_stamp_differs(f, modifyList(st, list(mtime = st$mtime - 2e-6))), "no longer")
  expect_match(mp_stamp_differs(f, modifyList(st, list(size = st$size + 1))), "no longer")
})

test_that("values of every size and kind read back identical, conditions too", {
  vals <- list(NULL, 42L, letters, runif(1000), as.numeric(1:70000),
               simpleError("a stored condition"), list(a = 1, b = list("x")))
  for (x in vals) {
    f <- tempfile(fileext = ".mpk")
    mp_write(x, f)
    expect_identical(mp_read_verified(f, stamp_of(f), "x"), x)
    unlink(f)
  }
})

test_that("a file that does not decode, unchanged since its stamp, gives the decoder's error", {
  f <- tempfile(fileext = ".mpk")
  on.exit(unlink(f))
  writeBin(as.raw(c(0x81, 0xa1)), f)
  expect_error(mp_read_verified(f, stamp_of(f), "x"), "truncated.*", class = "error")
  expect_error(mp_read_verified(f, stamp_of(f), "x"), f, fixed = TRUE)
})
