# Shared R-value msgpack test vectors: name -> value. Sourced (base R only)
# by generate.R, check.R and rpkg/tests/testthat/test-msgpack.R; the Go tests
# in engine/rvalue read the generated <name>.mpk files.
#
# Values must serialize the same in every process: closures and formulas get
# globalenv() as their environment explicitly (not the sourcing frame) and no
# srcref, and the S4 class lives in globalenv().
mp_vector_cases <- function() {
  g <- globalenv()
  if (!methods::isClass("MpPoint", where = g)) {
    methods::setClass("MpPoint", representation(x = "numeric", label = "character"), where = g)
  }
  big_int <- 1:70000
  big_int[seq(7L, 70000L, by = 7L)] <- NA
  list(
    null = NULL,
    logical = c(TRUE, FALSE, NA),
    integer = c(0L, 1L, -1L, NA, 2147483647L, -2147483647L, 127L, 128L, -33L),
    # -0 from a string: the byte compiler pools constants by identical(), which
    # would turn a literal -0 into 0.
    double = c(0, as.numeric("-0"), 1.5, -2.25, NA, NaN, Inf, -Inf, 1e300, 5e-324, pi),
    complex = c(complex(real = c(1, 0, -1.5), imaginary = c(-1, NaN, Inf)), NA),
    character = c("a", "", NA, "\u00e9t\u00e9 \u65e5\u672c\u8a9e", strrep("x", 31),
                  strrep("y", 32), strrep("z", 300)),
    raw = as.raw(c(0, 1, 127, 128, 255)),
    empty = list(logical(0), integer(0), double(0), complex(0), character(0),
                 raw(0), list()),
    named = c(a = 1L, b = NA, `c d` = 3L),
    matrix = matrix(c(1.5, 2, NA, 4, 5, 6), 2,
                    dimnames = list(c("r1", "r2"), c("A", "B", "C"))),
    array3d = array(1:24, c(2, 3, 4)),
    table = table(c("a", "b", "a", "c")),
    factor = factor(c("lo", "hi", NA, "lo"), levels = c("lo", "hi")),
    ordered = factor(c("S", "L", "M"), levels = c("S", "M", "L"), ordered = TRUE),
    df = data.frame(id = 1:3, name = c("a", "b", NA), score = c(0.5, NA, 2),
                    grp = factor(c("x", "y", "x")), stringsAsFactors = FALSE),
    df_rownames = data.frame(v = c(TRUE, FALSE), row.names = c("first", "second")),
    list = list(a = 1, b = NULL, c = list(d = "x", e = list()), 2L),
    date = as.Date(c("2024-01-15", NA, "1969-12-31")),
    posixct = as.POSIXct(c("2024-01-15 12:34:56", "2000-02-29 00:00:00"), tz = "UTC"),
    posixct_tz = structure(c(1700000000, NA), class = c("POSIXct", "POSIXt"),
                           tzone = "America/New_York"),
    closure = as.function(alist(x = , y = 2, x + y), envir = g),
    formula = eval(quote(y ~ x + log(z)), g),
    environment = g,
    s4 = methods::new("MpPoint", x = c(1, 2), label = "p"),
    language = quote(f(x, 1)),
    big_double = seq(0, 1, length.out = 70000),
    big_integer = big_int
  )
}
