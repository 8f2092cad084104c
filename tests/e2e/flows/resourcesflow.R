# Resources locally: big asks for more memory than the tests' fake machine
# has (METAFLOW_LOCAL_MEMORY), gpu for one of its GPUs (METAFLOW_LOCAL_GPUS).
library(metaflow)

cuda <- function() Sys.getenv("CUDA_VISIBLE_DEVICES", unset = "unset")

start <- function(self) {
  self$parts <- 1:2
  cat("start sees CUDA_VISIBLE_DEVICES [", cuda(), "]\n", sep = "")
}
big <- function(self) {
  Sys.sleep(0.3) # long enough that two at once would overlap
  self$part <- self$input
}
join <- function(self, inputs) {
  self$total <- sum(sapply(inputs, function(i) i$part))
}
gpu <- function(self) {
  cat("gpu sees CUDA_VISIBLE_DEVICES [", cuda(), "]\n", sep = "")
}
end <- function(self) {
  cat("end sees CUDA_VISIBLE_DEVICES [", cuda(), "]\n", sep = "")
}

metaflow("ResourcesFlowR") %>%
  step(step = "start", r_function = start, next_step = "big", foreach = "parts") %>%
  step(decorator("resources", memory = 60000, cpu = 1),
       step = "big", r_function = big, next_step = "join") %>%
  step(step = "join", r_function = join, next_step = "gpu", join = TRUE) %>%
  step(resources(gpu = 1, memory = 100), step = "gpu", r_function = gpu, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
