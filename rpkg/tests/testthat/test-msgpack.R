# The base-R msgpack codec (shim/runtime/msgpack.R, copied into the package
# namespace): R-value round trips in memory and on files, canonical bytes,
# other writers' encodings, the plain dialect, and the shared test vectors.

# Round trip through memory and a file; the file holds the mp_pack() bytes.
expect_roundtrip <- function(x) {
  b <- mp_pack(x)
  expect_true(is.raw(b))
  expect_identical(mp_unpack(b), x)
  f <- tempfile(fileext = ".mpk")
  on.exit(unlink(f))
  mp_write(x, f)
  expect_identical(readBin(f, "raw", file.size(f)), b)
  y <- mp_read(f)
  expect_identical(y, x)
  expect_identical(mp_pack(y), b)
  invisible(y)
}

hex <- function(...) as.raw(strtoi(c(...), 16L))
bits <- function(x) writeBin(as.double(x), raw())
# A string key or type tag as msgpack bytes.
s <- function(x) c(as.raw(0xa0 + nchar(x)), charToRaw(x))

test_that("atomic vectors of every type round-trip at lengths 0, 1, many and >= 65536", {
  for (n in c(0, 1, 100, 70000)) {
    i <- seq_len(n)
    expect_roundtrip(rep_len(c(TRUE, FALSE, NA), n))
    expect_roundtrip(rep_len(c(1L, NA, -5L, .Machine$integer.max, -.Machine$integer.max), n))
    expect_roundtrip(rep_len(c(0.5, NA, NaN, Inf, -Inf, -1e-300, 1e300), n))
    expect_roundtrip(complex(real = i / 3, imaginary = -i)[i])
    expect_roundtrip(rep_len(c("a", "", NA, "\u00e9t\u00e9", "\u65e5\u672c"), n))
    expect_roundtrip(as.raw(i %% 256L))
  }
})

test_that("NA keeps its payload and -0 its sign", {
  x <- c(NA, NaN, -0, 0)
  y <- expect_roundtrip(x)
  expect_identical(bits(y), bits(x))
  expect_true(is.na(y[1]) && !is.nan(y[1]) && is.nan(y[2]))
  z <- mp_unpack(mp_pack(c(x, runif(70000))))            # through "b" as well
  expect_identical(bits(z[1:4]), bits(x))
  cx <- c(NA_complex_, complex(real = NaN, imaginary = -0))
  expect_identical(writeBin(mp_unpack(mp_pack(cx)), raw()), writeBin(cx, raw()))
})

test_that("names, matrices and arrays keep their attributes", {
  expect_roundtrip(c(a = 1, b = 2, `c d` = NA))
  expect_roundtrip(setNames(1:70000, paste0("n", 1:70000)))
  expect_roundtrip(matrix(1:6, 2, dimnames = list(c("r1", "r2"), c("A", "B", "C"))))
  expect_roundtrip(matrix(runif(140000), 700))
  expect_roundtrip(array(as.double(1:24), 2:4, dimnames = list(NULL, letters[1:3], LETTERS[1:4])))
  expect_roundtrip(structure(1:3, extra = list(1, NULL), class = "myclass"))
  expect_roundtrip(table(c("a", "b", "a")))
})

test_that("strings keep UTF-8 and every header width", {
  x <- c(strrep("a", 31), strrep("b", 32), strrep("c", 255), strrep("d", 256),
         strrep("\u00e9", 40000), NA, "")
  y <- expect_roundtrip(x)
  expect_identical(Encoding(y[5]), "UTF-8")
  # A long string among short ones makes the decoder widen its scan.
  expect_roundtrip(c(rep("x", 10), strrep("y", 100000), rep(c("z", NA), 10)))
  # Many strings on a file: the reader refills its window.
  expect_roundtrip(sprintf("item-%06d-\u00e9", 1:200000))
  latin <- iconv("caf\u00e9", "UTF-8", "latin1")
  expect_identical(mp_unpack(mp_pack(latin)), latin)
})

test_that("factors, data frames, dates and times round-trip", {
  expect_roundtrip(factor(c("lo", "hi", NA, "lo"), levels = c("lo", "hi")))
  expect_roundtrip(factor(c("S", "L"), levels = c("S", "M", "L"), ordered = TRUE))
  df <- data.frame(id = 1:3, name = c("a", "b", NA), score = c(0.5, NA, 2),
                   grp = factor(c("x", "y", "x")), stringsAsFactors = FALSE)
  y <- expect_roundtrip(df)
  expect_identical(.row_names_info(y, 0L), c(NA_integer_, -3L))  # compact row names
  expect_roundtrip(data.frame(v = c(TRUE, FALSE), row.names = c("first", "second")))
  expect_roundtrip(data.frame(a = 1:3, s = I(c("p", "q", "r")), stringsAsFactors = TRUE))
  expect_roundtrip(df[0, ])
  expect_roundtrip(data.frame())
  expect_roundtrip(df[c(3, 1), ])                                # non-automatic row names
  expect_roundtrip(as.Date(c("2024-01-15", NA)))
  expect_roundtrip(as.POSIXct("2024-01-15 12:34:56", tz = "America/New_York") + c(0, 0.5))
  expect_roundtrip(as.POSIXlt("2024-01-15 12:34:56", tz = "UTC"))
  expect_roundtrip(Sys.time() - as.POSIXct("2024-01-01", tz = "UTC"))
})

test_that("lists keep NULL elements, names and nesting", {
  expect_roundtrip(list())
  expect_roundtrip(list(NULL))
  expect_roundtrip(list(a = 1, b = NULL, c = list(d = NULL, e = list(f = "x")), 2L))
  expect_roundtrip(setNames(list(), character(0)))
  expect_roundtrip(lapply(1:300, function(i) if (i %% 3) i else NULL))
})

test_that("closures, environments, formulas, language and S4 objects go through rds", {
  f <- function(x, y = 2) x + y
  environment(f) <- globalenv()
  expect_roundtrip(f)
  expect_roundtrip(globalenv())
  expect_roundtrip(emptyenv())
  expect_roundtrip(eval(quote(y ~ x + log(z)), globalenv()))
  expect_roundtrip(quote(f(x, 1)))
  expect_roundtrip(as.name("sym"))
  expect_roundtrip(expression(a + 1, b))
  expect_roundtrip(list(fun = sum, env = baseenv()))
  e <- new.env()
  assign("a", 1:3, envir = e)
  got <- mp_unpack(mp_pack(e))
  expect_true(is.environment(got))
  expect_identical(as.list(got), list(a = 1:3))
  defs <- new.env()
  cls <- methods::setClass("MpTestPoint", representation(x = "numeric"), where = defs)
  p <- methods::new(methods::getClass("MpTestPoint", where = defs), x = 1:2 / 2)
  expect_roundtrip(p)
  expect_identical(mp_unpack(mp_pack(p))@x, c(0.5, 1))
  expect_identical(mp_unpack(mp_pack(f))(1), 3)
})

test_that("the encoding is canonical and uses the smallest headers", {
  expect_identical(mp_pack(NULL), c(hex("81"), s("t"), s("null")))
  expect_identical(mp_pack(TRUE), c(hex("82"), s("t"), s("logical"), s("v"), hex("91", "c3")))
  expect_identical(mp_pack(c(1L, NA)),
                   c(hex("82"), s("t"), s("integer"), s("v"), hex("92", "d2", "00", "00", "00", "01", "c0")))
  expect_identical(mp_pack(1.5), c(hex("82"), s("t"), s("double"), s("v"), hex("91", "cb"),
                                   writeBin(1.5, raw(), endian = "big")))
  expect_identical(mp_pack(as.raw(1:3)), c(hex("82"), s("t"), s("raw"), s("v"), hex("c4", "03", "01", "02", "03")))
  expect_identical(mp_pack(c(a = "x")),
                   c(hex("83"), s("t"), s("character"), s("a"), hex("81"), s("names"),
                     hex("82"), s("t"), s("character"), s("v"), hex("91"), s("a"),
                     s("v"), hex("91"), s("x")))
  expect_identical(mp_pack(strrep("q", 40))[17:18], hex("d9", "28"))        # str8
  expect_identical(mp_pack(as.list(1:20))[11:13], hex("dc", "00", "14"))    # array16
  # "b": n as uint32, an array of one bin32 chunk of little-endian doubles.
  b <- mp_pack(as.double(1:70000))
  expect_identical(b[1:25], c(hex("83"), s("t"), s("double"), s("n"), hex("ce", "00", "01", "11", "70"),
                              s("b"), hex("91", "c6", "00", "08", "8b", "80")))
  expect_identical(b[26:33], writeBin(1, raw(), endian = "little"))
  expect_identical(mp_pack(as.double(1:70000)), b)
})

test_that("vectors over 64 MiB are split into 64 MiB chunks", {
  n <- 8388608L + 3L
  b <- mp_pack(numeric(n))
  expect_identical(b[20:25], hex("92", "c6", "04", "00", "00", "00"))
  expect_identical(b[25 + 2^26 + 1:2], hex("c4", "18"))
  expect_identical(length(mp_unpack(b)), n)
})

# A "b" document with chunks of `chunk` elements, as another writer might cut it.
chunked_doc <- function(x, chunk, with_n = TRUE) {
  size <- c(logical = 4, integer = 4, double = 8, complex = 16)[[typeof(x)]]
  n <- length(x)
  starts <- seq(1, n, by = chunk)
  parts <- lapply(starts, function(a) {
    data <- writeBin(x[a:min(n, a + chunk - 1)], raw(), size = size, endian = "little")
    c(hex("c6"), writeBin(length(data), raw(), size = 4, endian = "big"), data)
  })
  nkey <- if (with_n) c(s("n"), hex("ce"), writeBin(as.integer(n), raw(), size = 4, endian = "big"))
  c(as.raw(if (with_n) 0x83 else 0x82), s("t"), s(typeof(x)), nkey, s("b"),
    hex("dc"), writeBin(length(parts), raw(), size = 2, endian = "big")[1:2], unlist(parts))
}

test_that("~10 MB vectors stream through files, in chunks of any size", {
  x <- runif(1310720)                                   # 10 MiB
  f <- tempfile()
  on.exit(unlink(f))
  mp_write(x, f)
  expect_identical(file.size(f), 8 * 1310720 + 25)
  expect_identical(mp_read(f), x)
  for (case in list(list(x, 100003), list(x[-1], 65536 * 3), list(runif(1000003), 50000),
                    list(sample(c(TRUE, FALSE, NA), 2e6, TRUE), 333333),
                    list(sample(c(1:9, NA), 2e6, TRUE), 1e6),
                    list(complex(real = runif(4e5), imaginary = 1), 1e5))) {
    for (with_n in c(TRUE, FALSE)) {
      doc <- chunked_doc(case[[1]], case[[2]], with_n)
      writeBin(doc, f)
      expect_identical(mp_read(f), case[[1]])
      expect_identical(mp_unpack(doc), case[[1]])
    }
  }
  # Values after a streamed vector are read from the right place.
  y <- list(a = runif(2e5), b = "after", c = list(d = 1:3, e = rnorm(1e5)))
  expect_roundtrip(y)
})

# Runs code with "b" vectors read in pieces of `bytes` (8 MiB in use).
with_read_piece <- function(bytes, code) {
  ns <- environment(mp_read_b)
  old <- get("mp_read_piece_bytes", envir = ns)
  locked <- bindingIsLocked("mp_read_piece_bytes", ns)
  if (locked) unlockBinding("mp_read_piece_bytes", ns)
  assign("mp_read_piece_bytes", bytes, envir = ns)
  on.exit({
    assign("mp_read_piece_bytes", old, envir = ns)
    if (locked) lockBinding("mp_read_piece_bytes", ns)
  })
  force(code)
}

test_that("vectors of many chunks are read in pieces of any size, identical", {
  f <- tempfile()
  on.exit(unlink(f))
  # Lengths with many divisors (pieces view the vector as a matrix) and a
  # prime one (pieces by ranges), chunks that do not line up with pieces.
  cases <- list(list(runif(120000), 7001), list(runif(100003), 30000),
                list(sample(c(1:9, NA), 60000, TRUE), 25000),
                list(sample(c(TRUE, FALSE, NA), 50021, TRUE), 9999),
                list(complex(real = runif(30000), imaginary = -1), 4096))
  for (bytes in c(24576, 80000, 2^20)) {
    with_read_piece(bytes, {
      for (case in cases) {
        writeBin(chunked_doc(case[[1]], case[[2]]), f)
        expect_identical(mp_read(f), case[[1]])
      }
    })
  }
})

test_that("documents from other writers decode", {
  hdr <- function(t) c(s("t"), s(t))
  ints <- c(hex("82"), hdr("integer"), s("v"), hex("96", "05", "fd", "cd", "01", "2c",
            "d3", "ff", "ff", "ff", "ff", "ff", "fe", "ee", "90", "c0", "ce", "7f", "ff", "ff", "ff"))
  expect_identical(mp_unpack(ints), c(5L, -3L, 300L, -70000L, NA, .Machine$integer.max))
  dbls <- c(hex("82"), hdr("double"), s("v"), hex("94", "07", "ca"),
            writeBin(0.5, raw(), size = 4, endian = "big"), hex("c0", "d0", "fe"))
  expect_identical(mp_unpack(dbls), c(7, 0.5, NA, -2))
  lgls <- c(hex("82"), hdr("logical"), s("v"), hex("93", "01", "00", "c0"))
  expect_identical(mp_unpack(lgls), c(TRUE, FALSE, NA))
  # Attributes after "v", and a str8 header where fixstr would do.
  late <- c(hex("83"), hdr("character"), s("v"), hex("91", "d9", "01"), charToRaw("x"),
            s("a"), hex("81"), s("names"), hex("82"), hdr("character"), s("v"), hex("91"), s("n"))
  expect_identical(mp_unpack(late), c(n = "x"))
  cplx <- c(hex("82"), hdr("complex"), s("v"), hex("91", "92", "01", "ca"),
            writeBin(-1, raw(), size = 4, endian = "big"))
  expect_identical(mp_unpack(cplx), complex(real = 1, imaginary = -1))
})

test_that("malformed documents fail clearly", {
  good <- mp_pack(list(a = 1:3, b = "x"))
  expect_error(mp_unpack(good[-length(good)]), "truncated")
  expect_error(mp_unpack(c(good, hex("c0"))), "trailing")
  expect_error(mp_unpack(c(hex("81"), s("t"), s("pairlist"))), "unknown R value type")
  expect_error(mp_unpack(c(hex("81"), s("v"), hex("c0"))), "must start with key")
  expect_error(mp_unpack(c(hex("82"), s("t"), s("integer"), s("v"), hex("91"), s("x"))), "non-numeric")
  expect_error(mp_unpack(c(hex("82"), s("t"), s("double"), s("b"), hex("91", "c4", "03", "00", "00", "00"))),
               "not a multiple")
  f <- tempfile()
  on.exit(unlink(f))
  writeBin(mp_pack(runif(1e5))[1:5000], f)
  expect_error(mp_read(f), "truncated")
  expect_error(mp_unpack("text"), "raw vector")
})

test_that("plain msgpack maps R lists and scalars as the task spec needs", {
  spec <- list(flow = "HelloFlow", run_id = "12", step = "start", task_id = "1", attempt = 0L,
               join = FALSE,
               inputs = list(list(step = "_parameters", task_id = "0",
                                  artifacts = list(alpha = list(sha = "ab12", path = "/d/ab12")))),
               foreach_var = "", index = -1L, parameters = list("alpha", "beta"),
               current = list(flow_name = "HelloFlow", tags = ""), none = NULL,
               ratio = 0.25, blob = as.raw(1:3), empty = list(), nomap = setNames(list(), character(0)))
  b <- mp_pack_plain(spec)
  expect_identical(mp_unpack_plain(b), spec)
  f <- tempfile()
  on.exit(unlink(f))
  mp_write_plain(spec, f)
  expect_identical(mp_read_plain(f), spec)

  expect_identical(mp_pack_plain(NULL), hex("c0"))
  expect_identical(mp_pack_plain(TRUE), hex("c3"))
  expect_identical(mp_pack_plain(NA), hex("c0"))
  expect_identical(mp_pack_plain(5L), hex("05"))
  expect_identical(mp_pack_plain(-1L), hex("ff"))
  expect_identical(mp_pack_plain(200L), hex("cc", "c8"))
  expect_identical(mp_pack_plain(-200L), hex("d1", "ff", "38"))
  expect_identical(mp_pack_plain(70000L), hex("ce", "00", "01", "11", "70"))
  expect_identical(mp_pack_plain(c(1L, NA, -40L)), hex("93", "01", "c0", "d0", "d8"))
  expect_identical(mp_pack_plain(1), c(hex("cb"), writeBin(1, raw(), endian = "big")))
  expect_identical(mp_pack_plain(c(NA, NaN))[1:3], hex("92", "c0", "cb"))
  expect_identical(mp_pack_plain("x"), s("x"))
  expect_identical(mp_pack_plain(c("x", "y")), c(hex("92"), s("x"), s("y")))
  expect_identical(mp_pack_plain(list()), hex("90"))
  expect_identical(mp_pack_plain(c(a = 1L, b = 2L)), c(hex("82"), s("a"), hex("01"), s("b"), hex("02")))
  expect_identical(mp_pack_plain(factor("lvl")), s("lvl"))
  expect_error(mp_pack_plain(function() 1), "cannot encode")

  # Decoding: int widths, uint64 and out-of-int32 values become doubles.
  expect_identical(mp_unpack_plain(hex("cd", "01", "00")), 256L)
  expect_identical(mp_unpack_plain(hex("ce", "80", "00", "00", "00")), 2147483648)
  expect_identical(mp_unpack_plain(hex("d3", "ff", "ff", "ff", "ff", "ff", "ff", "ff", "fe")), -2L)
  expect_identical(mp_unpack_plain(hex("cf", "00", "00", "01", "00", "00", "00", "00", "00")), 2^40)
  expect_identical(mp_unpack_plain(c(hex("ca"), writeBin(1.5, raw(), size = 4, endian = "big"))), 1.5)
  expect_identical(mp_unpack_plain(hex("92", "c2", "c0")), list(FALSE, NULL))
  expect_identical(mp_unpack_plain(hex("c4", "02", "0a", "0b")), as.raw(10:11))
  expect_identical(mp_unpack_plain(c(hex("81"), s("k"), hex("91", "2a"))), list(k = list(42L)))
  expect_error(mp_unpack_plain(hex("c7", "01", "01", "00")), "unsupported")
})

test_that("the shared test vectors match byte for byte", {
  root <- Sys.getenv("METAFLOW_REPO_ROOT")
  if (!nzchar(root)) skip("METAFLOW_REPO_ROOT is not set")
  dir <- file.path(root, "tests", "vectors")
  env <- new.env()
  sys.source(file.path(dir, "cases.R"), envir = env, keep.source = FALSE)
  cases <- env$mp_vector_cases()
  expect_gt(length(cases), 20)
  for (nm in names(cases)) {
    path <- file.path(dir, paste0(nm, ".mpk"))
    expect_true(file.exists(path), label = path)
    bytes <- readBin(path, "raw", file.size(path))
    expect_identical(mp_read(path), cases[[nm]], label = nm)
    expect_identical(mp_pack(cases[[nm]]), bytes, label = nm)
  }
})

test_that("raw vectors and large rds values are stored in chunks and round-trip", {
  f <- tempfile()
  on.exit(unlink(f))
  head_has_b <- function(bytes) grepl("a162", paste(as.character(bytes[1:min(40, length(bytes))]), collapse = ""))
  for (n in c(0, 10, 65535, 65536, 70 * 2^20 + 3)) {
    x <- as.raw(seq_len(n) %% 251)
    doc <- mp_pack(x)
    expect_identical(head_has_b(doc), n >= 65536, info = n)
    expect_identical(mp_unpack(doc), x)
    mp_write(x, f)
    expect_identical(mp_read(f), x)
  }
  # An environment (what it encloses may be large) goes through a file and
  # "b" chunks when written to a file; in memory as before.
  e <- new.env()
  e$r <- as.raw(seq_len(70 * 2^20) %% 13)
  e$n <- 1:3
  mp_write(e, f)
  con <- file(f, "rb")
  bytes <- readBin(con, "raw", 40)
  close(con)
  expect_true(head_has_b(bytes))
  back <- mp_read(f)
  expect_identical(back$r, e$r)
  expect_identical(back$n, 1:3)
  setClass("MpBig", representation(payload = "raw"))
  s4 <- new("MpBig", payload = as.raw(seq_len(65 * 2^20) %% 5))
  mp_write(s4, f)
  expect_identical(mp_read(f), s4)
  expect_identical(mp_unpack(mp_pack(s4)), s4)
  # Small rds values keep the one-bin form.
  cl <- function(x) x + 1
  environment(cl) <- globalenv()
  expect_false(head_has_b(mp_pack(cl)))
})
