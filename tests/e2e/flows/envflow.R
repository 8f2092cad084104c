library(metaflow)
start <- function(self) cat("greeting is", Sys.getenv("MF_GREETING"), "\n")
end <- function(self) cat("greeting in end is [", Sys.getenv("MF_GREETING"), "]\n", sep = "")
metaflow("EnvFlowR") %>%
  step(decorator("environment", vars = list(MF_GREETING = "hello there")),
       step = "start", r_function = start, next_step = "end") %>%
  step(step = "end", r_function = end) %>%
  run()
