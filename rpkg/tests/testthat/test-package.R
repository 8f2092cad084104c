# The code package (--package-suffixes): which files travel with a run.

# A flow folder with files that belong in a package and files that do not.
package_fixture <- function() {
  dir <- tempfile("pkg")
  write <- function(rel, text) {
    p <- file.path(dir, rel)
    dir.create(dirname(p), recursive = TRUE, showWarnings = FALSE)
    writeBin(charToRaw(text), p)
  }
  write("flow.R", "metaflow('F')\n")
  write("movies.csv", "title,year\nHeat,1995\n")
  write("data/x.csv", "x\n1\n")
  write("data/deep/y.CSV", "y\n2\n")
  write("model.rds", "not really rds")
  write("script.py", "print(1)\n")
  write("notes.txt", "not code")
  write("Rmd.notR", "no")
  write(".hidden.R", "hidden file")
  write(".metaflow/F/1/_code.R", "datastore")
  write(".git/hooks/x.R", "git")
  write("sub/.cache/z.R", "hidden folder")
  write("sub/keep.R", "kept")
  write("empty.R", "")
  dir
}

local_no_config <- function(.frame = parent.frame()) {
  home <- tempfile("mfhome")
  dir.create(home)
  local_envvars(METAFLOW_HOME = home, METAFLOW_PROFILE = "",
                METAFLOW_DEFAULT_PACKAGE_SUFFIXES = "", .frame = .frame)
}

paths_of <- function(pkg) vapply(pkg, `[[`, "", "path")

test_that("suffixes are accepted with or without the dot, as text or a vector", {
  want <- c(".R", ".csv")
  expect_identical(parse_package_suffixes("R,.csv"), want)
  expect_identical(parse_package_suffixes(".R,.csv"), want)
  expect_identical(parse_package_suffixes(c(".R", ".csv")), want)
  expect_identical(parse_package_suffixes(c("R", "csv")), want)
  expect_identical(parse_package_suffixes(".R,.csv,"), want) # Metaflow R's tutorials
  expect_identical(parse_package_suffixes(" .R , csv "), want)
  expect_identical(parse_package_suffixes(c(".R,.csv", ".r", ".CSV")), want)
  expect_identical(parse_package_suffixes(NULL), character(0))
  expect_identical(parse_package_suffixes(""), character(0))
  expect_error(parse_package_suffixes(1), "package suffixes must be text")
  expect_error(parse_package_suffixes(NA_character_), "package suffixes must be text")
  expect_error(parse_package_suffixes(".R,data/.csv"), "invalid package suffix \"data/.csv\"")
  expect_error(parse_package_suffixes(".R,."), "invalid package suffix \".\"")
})

test_that("the defaults are Metaflow's, and given suffixes add to them", {
  local_no_config()
  expect_identical(package_suffixes(), c(".py", ".R", ".RDS"))
  expect_identical(package_suffixes("csv,.r"), c(".py", ".R", ".RDS", ".csv"))
  local_envvars(METAFLOW_DEFAULT_PACKAGE_SUFFIXES = ".R")
  expect_identical(package_suffixes(".csv"), c(".R", ".csv"))
})

test_that("the package has the matching visible files, sorted, with their bytes", {
  local_no_config()
  dir <- package_fixture()
  on.exit(unlink(dir, recursive = TRUE))
  pkg <- collect_code_package(dir)
  expect_identical(paths_of(pkg), c("empty.R", "flow.R", "model.rds", "script.py", "sub/keep.R"))
  pkg <- collect_code_package(dir, ".R,.csv")
  expect_identical(paths_of(pkg), c("data/deep/y.CSV", "data/x.csv", "empty.R", "flow.R",
                                    "model.rds", "movies.csv", "script.py", "sub/keep.R"))
  for (f in pkg) {
    expect_identical(f$content, readBin(file.path(dir, f$path), "raw", 1000), info = f$path)
    expect_named(f, c("path", "content"))
  }
  expect_identical(pkg[[which(paths_of(pkg) == "empty.R")]]$content, raw(0))
  # Same result for the other spellings of the suffixes.
  expect_identical(collect_code_package(dir, c("R", "csv")), pkg)
  # What the RunRequest carries encodes as Flow.package.
  msg <- proto_decode(proto_encode(list(name = "F", package = pkg), "Flow"), "Flow")
  expect_identical(msg$package, pkg)
})

test_that("symbolic links are followed without looping", {
  local_no_config()
  dir <- package_fixture()
  on.exit(unlink(dir, recursive = TRUE))
  ok <- file.symlink("..", file.path(dir, "data", "up")) &&
    file.symlink(file.path(dir, "data"), file.path(dir, "linked"))
  if (!ok) skip("cannot make symbolic links here")
  pkg <- collect_code_package(dir, ".csv")
  expect_true(all(c("data/x.csv", "linked/x.csv", "movies.csv") %in% paths_of(pkg)))
  expect_false(any(grepl("up/", paths_of(pkg), fixed = TRUE)))
})

test_that("a package over 100 MB fails with one line naming its size, largest files and the option", {
  local_no_config()
  dir <- package_fixture()
  on.exit(unlink(dir, recursive = TRUE))
  # Sparse files: the check uses sizes, before reading anything.
  sparse <- function(rel, bytes) {
    p <- file.path(dir, rel)
    dir.create(dirname(p), recursive = TRUE, showWarnings = FALSE)
    con <- file(p, "wb")
    seek(con, bytes - 1, rw = "write")
    writeBin(as.raw(0), con)
    close(con)
  }
  sparse("data/big.csv", 60 * 2^20)
  sparse("mid.RDS", 30 * 2^20)
  sparse("other.csv", 10 * 2^20 + 1)
  # Without .csv the package is small.
  expect_false("data/big.csv" %in% paths_of(collect_code_package(dir)))
  err <- tryCatch(collect_code_package(dir, ".csv"), error = conditionMessage)
  expect_identical(err, paste0(
    "the code package is 100.1 MB, over the limit of 100 MB: largest files ",
    "data/big.csv (60 MB), mid.RDS (30 MB), other.csv (10.0 MB); choose the files with ",
    "--package-suffixes (run(package_suffixes = ...); now .py,.R,.RDS,.csv)"))
})

test_that("a folder that does not exist is an error", {
  expect_error(collect_code_package(file.path(tempdir(), "no-such-flow-dir")),
               "the code package's folder .*no-such-flow-dir\" does not exist")
})
