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
