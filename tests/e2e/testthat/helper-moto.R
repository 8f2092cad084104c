# moto_server (the AWS emulator) for e2e tests that need S3 only: started
# once per test file that asks, on a free loopback port, and stopped when
# the file's tests are done.

# python3 and moto must not see R's LD_LIBRARY_PATH.
moto_py <- function(cmd, args, ...) system2("env", c("-u", "LD_LIBRARY_PATH", cmd, args), ...)

# Starts moto and creates the buckets; returns list(skip =) or
# list(endpoint =, env =), env being what the engine needs to reach it.
moto_s3 <- function(buckets, env = testthat::teardown_env()) {
  if (!nzchar(Sys.which("moto_server"))) {
    return(list(skip = "moto_server is not installed (pip install 'moto[server]')"))
  }
  moto_sh <- normalizePath(file.path(E2E_DIR, "..", "batch", "moto.sh"))
  port <- free_port()
  if (moto_py("bash", c(moto_sh, "start", port), stdout = FALSE) != 0) stop("could not start moto_server")
  withr::defer(moto_py("bash", c(moto_sh, "stop", port), stdout = FALSE), env)
  endpoint <- sprintf("http://127.0.0.1:%d", port)
  sdk <- c(AWS_ENDPOINT_URL = endpoint, AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = "testing",
           AWS_REGION = "us-east-1", AWS_CONFIG_FILE = "/dev/null", AWS_SHARED_CREDENTIALS_FILE = "/dev/null",
           AWS_EC2_METADATA_DISABLED = "true")
  for (b in buckets) {
    # CreateBucket needs no signature in moto: a plain PUT will do.
    h <- curl::new_handle(customrequest = "PUT")
    r <- curl::curl_fetch_memory(paste0(endpoint, "/", b), handle = h)
    if (r$status_code != 200) stop("moto: could not create bucket ", b, ": HTTP ", r$status_code)
  }
  list(skip = NULL, endpoint = endpoint, env = sdk)
}

# ---- AWS Batch ---------------------------------------------------------------

BATCH_IMAGE <- "metaflow-r-test:bookworm"

# Why Batch tests cannot run here (NULL: they can).
batch_skip_reason <- function() {
  if (!nzchar(Sys.which("docker"))) return("docker is not installed")
  if (!nzchar(Sys.which("moto_server"))) return("moto_server is not installed (pip install 'moto[server]')")
  if (system2("docker", "info", stdout = FALSE, stderr = FALSE) != 0) return("docker is not running")
  NULL
}

# Starts moto for a test file's AWS Batch tests: builds the local base-R
# image when absent (tests/batch/build-image.sh), creates the queue and the
# bucket (tests/batch/moto-setup.py), and when the file's tests are done waits
# for the job containers of flows to go (moto removes a job's container after
# marking it done) before stopping moto. Returns list(skip =) or
# list(endpoint =, env =), env being what a flow on Batch needs.
moto_batch <- function(queue, bucket, flows, label, env = testthat::teardown_env()) {
  why <- batch_skip_reason()
  if (!is.null(why)) return(list(skip = paste(label, "skipped:", why)))
  repo <- normalizePath(file.path(E2E_DIR, "..", ".."))
  if (system2("docker", c("image", "inspect", BATCH_IMAGE), stdout = FALSE, stderr = FALSE) != 0) {
    message(label, ": building ", BATCH_IMAGE, " (about 70 s, once)")
    st <- system2("bash", file.path(repo, "tests/batch/build-image.sh"))
    if (st != 0) stop("tests/batch/build-image.sh failed (exit status ", st, ")")
  }
  port <- free_port()
  moto <- file.path(repo, "tests/batch/moto.sh")
  if (moto_py("bash", c(moto, "start", port)) != 0) stop("could not start moto_server")
  withr::defer({
    wait_until(function() {
      left <- unlist(lapply(flows, function(f) {
        suppressWarnings(system2("docker", c("ps", "-aq", "--filter", paste0("name=^mf-", f, "-")),
                                 stdout = TRUE))
      }))
      !length(left)
    }, timeout = 30)
    moto_py("bash", c(moto, "stop", port), stdout = FALSE)
  }, env)
  endpoint <- sprintf("http://127.0.0.1:%d", port)
  st <- moto_py("python3", c(file.path(repo, "tests/batch/moto-setup.py"), endpoint, queue, bucket))
  if (st == 3) return(list(skip = paste(label, "skipped: python3 has no boto3 (it comes with moto)")))
  if (st != 0) stop("tests/batch/moto-setup.py failed (exit status ", st, ")")
  job_env <- jsonlite::toJSON(list(
    AWS_ENDPOINT_URL = endpoint, AWS_ACCESS_KEY_ID = "job", AWS_SECRET_ACCESS_KEY = "job-secret",
    AWS_REGION = "us-east-1"), auto_unbox = TRUE)
  list(skip = NULL, endpoint = endpoint, env = c(
    METAFLOW_BATCH_JOB_QUEUE = queue,
    METAFLOW_DATASTORE_SYSROOT_S3 = paste0("s3://", bucket, "/metaflow"),
    METAFLOW_BATCH_CONTAINER_IMAGE = BATCH_IMAGE,
    METAFLOW_BATCH_JOB_ENV = as.character(job_env),
    # The submitter (the engine) reaches moto the same way, with other keys.
    AWS_ENDPOINT_URL = endpoint, AWS_ACCESS_KEY_ID = "testing", AWS_SECRET_ACCESS_KEY = "testing",
    AWS_REGION = "us-east-1", AWS_CONFIG_FILE = "/dev/null", AWS_SHARED_CREDENTIALS_FILE = "/dev/null",
    AWS_EC2_METADATA_DISABLED = "true"))
}
