# self$input in foreach splits is x[[i]] for every kind of foreach value:
# those the engine cuts into one file per element (lists, data frames, named
# vectors) and those R extracts itself (factors, Dates).
library(metaflow)

values <- function() list(
  lst = list(a = 1:3, b = list(x = "y", z = NULL), c = data.frame(p = 1:2, q = c("u", NA))),
  df = data.frame(n = c(1.5, NA), s = c("a", "b"), stringsAsFactors = FALSE),
  named = c(first = 1L, second = NA, third = 3L),
  chr = c("é", NA, "z"),
  dbl = c(NA_real_, NaN, -Inf, 0.1),
  fct = factor(c("lo", "hi", "lo"), levels = c("lo", "hi")),
  dates = as.Date(c("2024-01-15", "1969-12-31")))

start <- function(self) {
  self$kinds <- names(values())
}
per_kind <- function(self) {
  self$kind <- self$input
  self$value <- values()[[self$kind]]
}
check <- function(self) {
  want <- values()[[self$kind]][[self$index + 1L]]
  self$same <- identical(self$input, want)
  if (!self$same) {
    message("MISMATCH ", self$kind, " ", self$index, ": ", paste(deparse(self$input), collapse = ""),
            " vs ", paste(deparse(want), collapse = ""))
  }
}
join_inner <- function(self, inputs) {
  self$kind <- inputs[[1]]$kind
  self$all_same <- all(vapply(inputs, function(i) i$same, NA))
  self$n <- length(inputs)
}
join_outer <- function(self, inputs) {
  self$report <- vapply(inputs, function(i) sprintf("%s:%d:%s", i$kind, i$n, i$all_same), "")
}
end <- function(self) cat("report:", sort(self$report), "\n")

metaflow("ForeachKindsFlowR") %>%
  step(step = "start", r_function = start, next_step = "per_kind", foreach = "kinds") %>%
  step(step = "per_kind", r_function = per_kind, next_step = "check", foreach = "value") %>%
  step(step = "check", r_function = check, next_step = "join_inner") %>%
  step(step = "join_inner", r_function = join_inner, next_step = "join_outer", join = TRUE) %>%
  step(step = "join_outer", r_function = join_outer, next_step = "end", join = TRUE) %>%
  step(step = "end", r_function = end) %>%
  run()
