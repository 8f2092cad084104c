# msgpack codec for metaflow, in base R only (it runs in stock R images).
#
# Two dialects, both specified in docs/ARCHITECTURE.md:
# - R-value msgpack (artifacts, parameters): mp_pack / mp_unpack in memory,
#   mp_write / mp_read on files (large vectors stream through "b" chunks).
# - plain msgpack (task spec and result): mp_pack_plain / mp_unpack_plain,
#   mp_write_plain / mp_read_plain.
#
# Every top-level name starts with mp_: the package sources this file into its
# namespace and the task runtime into its own environment.

# ---- constants -------------------------------------------------------------

mp_chunk_bytes <- 67108864      # a "b" chunk holds at most 64 MiB
mp_b_min_length <- 65536        # vectors this long (or longer) use "b"
mp_piece_bytes <- 1048576       # file I/O step: small enough to stay in cache
mp_flush_bytes <- 1048576       # buffered small writes before a writeBin()
mp_read_ahead <- 262144         # file reads for headers and small values
# R collects garbage when allocation passes a threshold that grows with the
# live heap, so with a 1 GiB vector live the 1 MiB pieces of a streamed copy
# would pile up to ~50% of it. A minor collection (~1 ms) after every 1/32 of
# the vector (at least 4 MiB) bounds that to ~3% at negligible cost.
mp_gc_bytes <- 4194304
mp_gc_every <- function(bytes) max(mp_gc_bytes, bytes / 32)
# Reading a "b" vector of several chunks, each piece is a fresh vector that
# is copied into place. glibc's malloc gives memory back to the system when
# more than twice the largest freed mapping is free at the top of its heap,
# so freeing many pieces per collection makes every new piece fault in
# fresh pages (1.5 GiB of page faults per GiB read: 0.7 s of system time).
# Collecting after every piece reuses one piece's memory instead; pieces of
# 8 MiB keep the collections (~1 ms each) to 0.1 s per GiB.
mp_read_piece_bytes <- 8388608
mp_chr_group <- 65536           # strings encoded per vectorised batch
mp_native_types <- c("logical", "integer", "double", "complex", "character",
                     "raw", "list")
mp_elt_size <- c(logical = 4, integer = 4, double = 8, complex = 16, raw = 1)

# ---- header encoders (smallest msgpack form) --------------------------------

# Big-endian bytes of a non-negative whole number below 2^53.
mp_be <- function(n, k) as.raw((n %/% 256^((k - 1):0)) %% 256)

mp_hdr_uint <- function(n) {
  if (n < 128) as.raw(n)
  else if (n < 256) as.raw(c(0xcc, n))
  else if (n < 65536) c(as.raw(0xcd), mp_be(n, 2))
  else if (n < 4294967296) c(as.raw(0xce), mp_be(n, 4))
  else c(as.raw(0xcf), mp_be(n, 8))
}

mp_hdr_len <- function(n, fix, fixmax, c16, c32, what) {
  if (n <= fixmax) as.raw(fix + n)
  else if (n < 65536) c(as.raw(c16), mp_be(n, 2))
  else if (n < 4294967296) c(as.raw(c32), mp_be(n, 4))
  else stop("msgpack: ", what, " of ", format(n, scientific = FALSE),
            " elements is too long", call. = FALSE)
}
mp_hdr_array <- function(n) mp_hdr_len(n, 0x90, 15, 0xdc, 0xdd, "array")
mp_hdr_map <- function(n) mp_hdr_len(n, 0x80, 15, 0xde, 0xdf, "map")

mp_hdr_str <- function(n) {
  if (n < 32) as.raw(0xa0 + n)
  else if (n < 256) as.raw(c(0xd9, n))
  else if (n < 65536) c(as.raw(0xda), mp_be(n, 2))
  else c(as.raw(0xdb), mp_be(n, 4))
}

mp_hdr_bin <- function(n) {
  if (n < 256) as.raw(c(0xc4, n))
  else if (n < 65536) c(as.raw(0xc5), mp_be(n, 2))
  else if (n < 4294967296) c(as.raw(0xc6), mp_be(n, 4))
  else stop("msgpack: a raw vector of ", format(n, scientific = FALSE),
            " bytes exceeds the 4 GiB bin limit", call. = FALSE)
}

# One string (map keys, type tags).
mp_str1 <- function(s) {
  if (is.na(s)) stop("msgpack: NA cannot be a map key", call. = FALSE)
  b <- charToRaw(enc2utf8(s))
  c(mp_hdr_str(length(b)), b)
}

mp_key <- list(t = mp_str1("t"), n = mp_str1("n"), a = mp_str1("a"),
               v = mp_str1("v"), b = mp_str1("b"))
mp_tag <- local({
  nm <- c("null", mp_native_types, "rds")
  structure(lapply(nm, mp_str1), names = nm)
})
mp_null_doc <- c(mp_hdr_map(1), mp_key$t, mp_tag$null)

# ---- vectorised element encoders --------------------------------------------
# Each returns list(bytes = raw, len = bytes per element) so callers can
# interleave elements with other data (plain maps) or just use the bytes.

mp_enc_lgl <- function(x) {
  na <- is.na(x)
  i <- (x != FALSE) + 1L
  i[na] <- 3L
  list(bytes = as.raw(c(0xc2, 0xc3, 0xc0))[i], len = rep.int(1L, length(x)))
}

# Integers as int32 (0xd2) with NA as nil, per the R-value spec.
mp_enc_int32 <- function(x) {
  n <- length(x)
  m <- matrix(as.raw(0xd2), 5L, n)
  m[2:5, ] <- writeBin(x, raw(), size = 4L, endian = "big")
  na <- is.na(x)
  if (!any(na)) {
    dim(m) <- NULL
    return(list(bytes = m, len = rep.int(5L, n)))
  }
  m[1L, na] <- as.raw(0xc0)
  keep <- matrix(TRUE, 5L, n)
  keep[2:5, na] <- FALSE
  list(bytes = m[keep], len = ifelse(na, 1L, 5L))
}

# Integers in their smallest msgpack form (plain dialect), NA as nil.
mp_enc_int_small <- function(x) {
  n <- length(x)
  na <- is.na(x)
  x[na] <- 0L
  w <- ifelse(x >= 0L,
              ifelse(x < 128L, 0L, ifelse(x < 256L, 1L, ifelse(x < 65536L, 2L, 4L))),
              ifelse(x >= -32L, 0L, ifelse(x >= -128L, 1L, ifelse(x >= -32768L, 2L, 4L))))
  code <- ifelse(x >= 0L, c(0, 0xcc, 0xcd, 0, 0xce)[w + 1L],
                 c(0, 0xd0, 0xd1, 0, 0xd2)[w + 1L])
  m <- matrix(as.raw(0), 5L, n)
  m[2:5, ] <- writeBin(x, raw(), size = 4L, endian = "big")
  first <- ifelse(w == 0L, x %% 256L, code)
  first[na] <- 0xc0
  w[na] <- 0L
  m[1L, ] <- as.raw(first)
  keep <- matrix(TRUE, 5L, n)
  keep[2:5, ] <- outer(2:5, w, function(r, w) r >= 6L - w)
  list(bytes = m[keep], len = w + 1L)
}

# Doubles as float64 (0xcb); bits are copied, so NA_real_ keeps its payload.
# na_nil: the plain dialect writes NA (not NaN) as nil.
mp_enc_dbl <- function(x, na_nil = FALSE) {
  n <- length(x)
  m <- matrix(as.raw(0xcb), 9L, n)
  m[2:9, ] <- writeBin(x, raw(), size = 8L, endian = "big")
  nil <- if (na_nil) is.na(x) & !is.nan(x) else FALSE
  if (!any(nil)) {
    dim(m) <- NULL
    return(list(bytes = m, len = rep.int(9L, n)))
  }
  m[1L, nil] <- as.raw(0xc0)
  keep <- matrix(TRUE, 9L, n)
  keep[2:9, nil] <- FALSE
  list(bytes = m[keep], len = ifelse(nil, 1L, 9L))
}

# Complex as [re, im] float64 pairs: 19 bytes each.
mp_enc_cplx <- function(x) {
  n <- length(x)
  m <- matrix(as.raw(0xcb), 19L, n)
  m[1L, ] <- as.raw(0x92)
  m[3:10, ] <- writeBin(Re(x), raw(), size = 8L, endian = "big")
  m[12:19, ] <- writeBin(Im(x), raw(), size = 8L, endian = "big")
  dim(m) <- NULL
  list(bytes = m, len = rep.int(19L, n))
}

# Strings as UTF-8 str, NA as nil. Headers are built for all elements at once
# and the bodies come from one paste(), then both are scattered into place.
mp_enc_chr <- function(x) {
  n <- length(x)
  x <- enc2utf8(x)
  na <- is.na(x)
  nb <- nchar(x, type = "bytes")
  nb[na] <- 0L
  hl <- ifelse(na | nb < 32L, 1L, ifelse(nb < 256L, 2L, ifelse(nb < 65536L, 3L, 5L)))
  hm <- matrix(as.raw(0), 5L, n)
  hm[2:5, ] <- writeBin(nb, raw(), size = 4L, endian = "big")
  hm[1L, ] <- as.raw(ifelse(na, 0xc0, ifelse(nb < 32L, 0xa0 + nb,
                     c(0, 0, 0xd9, 0xda, 0, 0xdb)[hl + 1L])))
  keep <- matrix(TRUE, 5L, n)
  keep[2:5, ] <- outer(2:5, hl, function(r, h) r >= 7L - h)
  len <- hl + nb
  start <- cumsum(len) - len + 1L
  out <- raw(sum(len))
  out[sequence(hl, from = start)] <- hm[keep]
  if (any(nb > 0L)) {
    body <- charToRaw(paste(x[!na], collapse = ""))
    out[sequence(nb, from = start + hl)] <- body
  }
  list(bytes = out, len = len)
}

# Interleaves two per-element byte streams: a1 b1 a2 b2 ... (plain maps).
mp_interleave <- function(a, b) {
  la <- a$len
  lb <- b$len
  start <- cumsum(la + lb) - (la + lb) + 1L
  out <- raw(sum(la) + sum(lb))
  out[sequence(la, from = start)] <- a$bytes
  out[sequence(lb, from = start + la)] <- b$bytes
  out
}

# ---- byte sinks --------------------------------------------------------------
# A writer collects small pieces (closures with <<-, since growing a list that
# lives in an environment with e$x[[i]] <- v copies it each time) and, for a
# connection, flushes them in ~1 MiB writes. vec() writes elements from..to of
# an atomic vector in little-endian machine form, in ~1 MiB pieces (column
# blocks for matrices), so no copy of a large vector is ever made.

mp_writer <- function(con = NULL) {
  parts <- list()
  k <- 0L
  pending <- 0
  since_gc <- 0
  emit <- function(r) {
    k <<- k + 1L
    parts[[k]] <<- r
    if (!is.null(con)) {
      pending <<- pending + length(r)
      if (pending >= mp_flush_bytes) flush()
    }
    invisible(NULL)
  }
  flush <- function() {
    if (k > 0L) {
      writeBin(unlist(parts[seq_len(k)], use.names = FALSE), con)
      parts <<- list()
      k <<- 0L
      pending <<- 0
    }
    invisible(NULL)
  }
  vec <- function(x, from, to, size, gc_every = Inf) {
    if (is.null(con)) {
      return(emit(writeBin(.subset(x, from:to), raw(), size = size, endian = "little")))
    }
    flush()
    step <- mp_piece_bytes %/% size
    put <- function(v) {
      writeBin(v, con, size = size, endian = "little")
      # Garbage per element: its copy and its index (a:b is 8 bytes an
      # element past 2^31), which dominates for raw.
      since_gc <<- since_gc + length(v) * (size + 8)
      if (since_gc >= gc_every) {
        gc(verbose = FALSE, full = FALSE)
        since_gc <<- 0
      }
    }
    ranges <- function(a, to) {
      while (a <= to) {
        b <- min(a + step - 1, to)
        put(.subset(x, a:b))
        a <- b + 1
      }
    }
    # A matrix's whole columns go out as column blocks: x[rows, j:k] copies
    # ~1.5x faster than x[a:b] and gives the same column-major bytes.
    d <- attr(x, "dim")
    r <- if (length(d) == 2L) d[[1L]] else 0
    c1 <- if (r > 0) ceiling((from - 1) / r) + 1 else 1
    c2 <- if (r > 0) floor(to / r) else 0
    if (r == 0 || r > step || c1 > c2) {
      ranges(from, to)
      return(invisible(NULL))
    }
    ranges(from, (c1 - 1) * r)
    rows <- seq_len(r)
    k <- step %/% r
    j <- c1
    while (j <= c2) {
      j2 <- min(c2, j + k - 1)
      v <- .subset(x, rows, j:j2)
      dim(v) <- NULL                 # drops dimnames too; writeBin wants a vector
      put(v)
      j <- j2 + 1
    }
    ranges(c2 * r + 1, to)
    invisible(NULL)
  }
  result <- function() {
    if (k == 0L) raw(0) else unlist(parts[seq_len(k)], use.names = FALSE)
  }
  # The bytes of a file as "b" chunks (a large rds value's serialization).
  file_chunks <- function(path) {
    size <- file.size(path)
    nchunks <- ceiling(size / mp_chunk_bytes)
    emit(mp_hdr_array(nchunks))
    flush()
    src <- file(path, "rb")
    on.exit(close(src))
    left <- size
    while (left > 0) {
      k <- min(left, mp_chunk_bytes)
      writeBin(mp_hdr_bin(k), con)
      left <- left - k
      while (k > 0) {
        piece <- readBin(src, "raw", min(k, mp_piece_bytes))
        if (!length(piece)) mp_err("serialization file ended early")
        writeBin(piece, con)
        k <- k - length(piece)
      }
    }
    invisible(NULL)
  }
  list(emit = emit, flush = flush, vec = vec, result = result, file_chunks = file_chunks,
       streaming = !is.null(con))
}

# ---- R-value encoder --------------------------------------------------------

mp_rtype <- function(x) {
  if (is.null(x)) return("null")
  if (isS4(x)) return("rds")
  t <- typeof(x)
  if (!(t %in% mp_native_types)) return("rds")
  # "bytes"-encoded strings have no UTF-8 form; R's serialization keeps them.
  if (t == "character" && any(Encoding(x) == "bytes")) return("rds")
  t
}

# attributes() expands compact row.names (c(NA, -n)) to 1:n; identical() sees
# the difference, so the stored form is written instead.
mp_attrs <- function(x) {
  a <- attributes(x)
  if (!is.null(a) && !is.null(a[["row.names"]])) {
    a["row.names"] <- list(.row_names_info(x, 0L))
  }
  a
}

# pre: bytes that go just before this value (its key in a map, its parent's
# header), merged into the value's first write, so that a small value costs
# a single emit.
mp_enc_value <- function(x, w, pre = NULL) {
  t <- mp_rtype(x)
  if (t == "null") return(w$emit(c(pre, mp_null_doc)))
  if (t == "rds") {
    # Version 3 writes the session's native encoding into its header, so the
    # same closure would give different bytes in a C and a UTF-8 locale.
    # A serialization over one chunk goes in "b" chunks ("n": its bytes), so
    # no bin holds over 4 GiB; written to a file, a value that may be large
    # is serialized into a file first, so peak memory stays near its size.
    if (w$streaming && mp_rds_via_file(x)) {
      tmp <- tempfile("mp-rds-")
      on.exit(unlink(tmp), add = TRUE)
      out <- file(tmp, "wb")
      serialize(x, out, version = 2L)
      close(out)
      size <- file.size(tmp)
      if (size > mp_chunk_bytes) {
        w$emit(c(pre, mp_hdr_map(3), mp_key$t, mp_tag$rds, mp_key$n, mp_hdr_uint(size), mp_key$b))
        return(w$file_chunks(tmp))
      }
      b <- readBin(tmp, "raw", size)
    } else {
      b <- serialize(x, NULL, version = 2L)
    }
    if (length(b) > mp_chunk_bytes) {
      w$emit(c(pre, mp_hdr_map(3), mp_key$t, mp_tag$rds, mp_key$n, mp_hdr_uint(length(b)), mp_key$b))
      return(mp_enc_chunks(b, length(b), 1, w))
    }
    w$emit(c(pre, mp_hdr_map(2), mp_key$t, mp_tag$rds, mp_key$v, mp_hdr_bin(length(b))))
    return(w$emit(b))
  }
  a <- mp_attrs(x)
  # length() may dispatch on a class (e.g. vctrs records are lists).
  n <- if (t == "list" && is.object(x)) length(unclass(x)) else length(x)
  big <- n >= mp_b_min_length && !is.na(mp_elt_size[t])
  head <- c(pre, mp_hdr_map(2L + big + !is.null(a)), mp_key$t, mp_tag[[t]],
            if (big) c(mp_key$n, mp_hdr_uint(n)))
  if (!is.null(a)) {
    head <- c(head, mp_key$a, mp_hdr_map(length(a)))
    nm <- names(a)
    for (i in seq_along(a)) {
      mp_enc_value(a[[i]], w, c(head, mp_str1(nm[i])))
      head <- NULL
    }
  }
  if (big) {
    w$emit(c(head, mp_key$b))
    return(mp_enc_chunks(x, n, mp_elt_size[[t]], w))
  }
  head <- c(head, mp_key$v)
  if (t == "list") {
    head <- c(head, mp_hdr_array(n))
    for (i in seq_len(n)) {
      mp_enc_value(.subset2(x, i), w, head)
      head <- NULL
    }
    if (n == 0) w$emit(head)
    return(invisible(NULL))
  }
  # Small or variable-width vectors: work on an attribute-free copy so no
  # method (as.vector.factor, is.na.POSIXlt, ...) gets in the way.
  if (!is.null(a)) attributes(x) <- NULL
  if (t == "raw") return(w$emit(c(head, mp_hdr_bin(n), x)))
  head <- c(head, mp_hdr_array(n))
  if (t == "character") {
    if (n <= 8) {  # the vectorised path costs more than it saves here
      strs <- lapply(x, function(s) if (is.na(s)) as.raw(0xc0) else mp_str1(s))
      return(w$emit(c(head, unlist(strs))))
    }
    for (from in seq.int(1, n, by = mp_chr_group)) {
      w$emit(c(head, mp_enc_chr(x[from:min(n, from + mp_chr_group - 1)])$bytes))
      head <- NULL
    }
    return(invisible(NULL))
  }
  w$emit(c(head, switch(t,
    logical = mp_enc_lgl(x)$bytes,
    integer = mp_enc_int32(x)$bytes,
    double = mp_enc_dbl(x)$bytes,
    complex = mp_enc_cplx(x)$bytes)))
}

# Whether an rds value may be large: environments and closures carry what
# they enclose, which object.size() does not count.
mp_rds_via_file <- function(x) {
  typeof(x) %in% c("environment", "closure") ||
    as.numeric(utils::object.size(x)) >= mp_chunk_bytes
}

# "b": an array of bin chunks of at most 64 MiB, little-endian elements.
mp_enc_chunks <- function(x, n, size, w) {
  per <- mp_chunk_bytes %/% size
  nchunks <- ceiling(n / per)
  gc_every <- mp_gc_every(n * size)
  w$emit(mp_hdr_array(nchunks))
  for (i in seq_len(nchunks)) {
    from <- (i - 1) * per + 1
    to <- min(n, i * per)
    w$emit(mp_hdr_bin((to - from + 1) * size))
    w$vec(x, from, to, size, gc_every)
  }
  invisible(NULL)
}

# ---- readers -----------------------------------------------------------------
# A reader is an environment over a raw buffer: the whole document (mp_unpack)
# or a window onto a file connection that is refilled on demand (mp_read).
# Only scalars are assigned into it, so no large object is ever copied.

mp_reader <- function(buf = raw(0), con = NULL) {
  rd <- new.env(parent = emptyenv())
  rd$buf <- buf
  rd$pos <- 1
  rd$len <- length(buf)
  rd$con <- con
  rd$off <- 0       # file offset of buf[1]
  rd
}

mp_err <- function(...) stop("msgpack: ", ..., call. = FALSE)

# Makes up to k bytes available from pos; returns how many are.
mp_fill <- function(rd, k) {
  avail <- rd$len - rd$pos + 1
  if (avail >= k || is.null(rd$con)) return(avail)
  keep <- if (avail > 0) rd$buf[rd$pos:rd$len] else raw(0)
  more <- readBin(rd$con, "raw", max(k - avail, mp_read_ahead))
  rd$off <- rd$off + rd$pos - 1
  rd$buf <- c(keep, more)
  rd$pos <- 1
  rd$len <- length(rd$buf)
  rd$len
}

mp_need <- function(rd, k) {
  if (rd$len - rd$pos + 1 < k && mp_fill(rd, k) < k) mp_err("truncated document")
}

# The token readers below check the buffer inline and call mp_need() only
# when they run out: they run once or more per value.
mp_u8 <- function(rd) {
  p <- rd$pos
  if (p > rd$len) {
    mp_need(rd, 1)
    p <- rd$pos
  }
  rd$pos <- p + 1
  as.integer(rd$buf[[p]])
}

mp_bytes <- function(rd, k) {
  if (k == 0) return(raw(0))
  p <- rd$pos
  if (p + k - 1 > rd$len) {
    mp_need(rd, k)
    p <- rd$pos
  }
  rd$pos <- p + k
  rd$buf[p:(p + k - 1)]
}

# A one-letter map key of an R value ("t", "n", "a", "v", "b").
mp_read_key <- function(rd) {
  p <- rd$pos
  if (p + 1 <= rd$len && rd$buf[[p]] == as.raw(0xa1)) {
    rd$pos <- p + 2
    return(rawToChar(rd$buf[p + 1]))
  }
  mp_read_str(rd)
}

# Big-endian integers of k bytes (k in 1, 2, 4, 8) as doubles, vectorised
# over the columns of a k-row matrix of byte values. 8-byte values are built
# from two exact 32-bit halves, so they are exact up to 2^53.
mp_be_num <- function(m, signed) {
  k <- nrow(m)
  horner <- function(rows) {
    v <- m[rows[1], ]
    for (r in rows[-1]) v <- v * 256 + m[r, ]
    v
  }
  if (k == 8) {
    hi <- horner(1:4)
    if (signed) hi <- ifelse(m[1, ] >= 128L, hi - 4294967296, hi)
    return(hi * 4294967296 + horner(5:8))
  }
  v <- horner(seq_len(k))
  if (signed) ifelse(m[1, ] >= 128L, v - 2^(8 * k), v) else v
}

mp_ube <- function(rd, k) mp_be_num(matrix(as.integer(mp_bytes(rd, k)), k), FALSE)
mp_sbe <- function(rd, k) mp_be_num(matrix(as.integer(mp_bytes(rd, k)), k), TRUE)

mp_utf8 <- function(b) {
  s <- rawToChar(b)
  Encoding(s) <- "UTF-8"
  s
}

# bin: also accept bin (other writers' strings in character vectors).
mp_read_str <- function(rd, bin = FALSE) {
  h <- mp_u8(rd)
  if (bin && h >= 0xc4 && h <= 0xc6) h <- h + (0xd9 - 0xc4)
  n <- if (h >= 0xa0 && h <= 0xbf) h - 0xa0
       else if (h == 0xd9) mp_ube(rd, 1)
       else if (h == 0xda) mp_ube(rd, 2)
       else if (h == 0xdb) mp_ube(rd, 4)
       else mp_err(sprintf("expected a string, found 0x%02x", h))
  mp_utf8(mp_bytes(rd, n))
}

mp_read_len <- function(rd, fixlo, c16, c32, what) {
  h <- mp_u8(rd)
  if (h >= fixlo && h <= fixlo + 15) h - fixlo
  else if (h == c16) mp_ube(rd, 2)
  else if (h == c32) mp_ube(rd, 4)
  else mp_err(sprintf("expected %s, found 0x%02x", what, h))
}
mp_read_map_len <- function(rd) mp_read_len(rd, 0x80, 0xde, 0xdf, "a map")
mp_read_array_len <- function(rd) mp_read_len(rd, 0x90, 0xdc, 0xdd, "an array")

mp_read_bin_len <- function(rd) {
  h <- mp_u8(rd)
  if (h == 0xc4) mp_ube(rd, 1)
  else if (h == 0xc5) mp_ube(rd, 2)
  else if (h == 0xc6) mp_ube(rd, 4)
  else mp_err(sprintf("expected bin, found 0x%02x", h))
}

# ---- plain decoder ------------------------------------------------------------

mp_read_plain_obj <- function(rd) {
  h <- mp_u8(rd)
  if (h <= 0x7f) return(as.integer(h))
  if (h >= 0xe0) return(as.integer(h - 256))
  if (h >= 0xa0 && h <= 0xbf) return(mp_utf8(mp_bytes(rd, h - 0xa0)))
  if (h >= 0x90 && h <= 0x9f) return(mp_read_plain_array(rd, h - 0x90))
  if (h >= 0x80 && h <= 0x8f) return(mp_read_plain_map(rd, h - 0x80))
  num <- function(v) if (abs(v) < 2147483648 && v != -2147483648) as.integer(v) else v
  switch(as.character(h),
    "192" = NULL,
    "194" = FALSE,
    "195" = TRUE,
    "196" = mp_bytes(rd, mp_ube(rd, 1)),
    "197" = mp_bytes(rd, mp_ube(rd, 2)),
    "198" = mp_bytes(rd, mp_ube(rd, 4)),
    "202" = readBin(mp_bytes(rd, 4), "double", 1L, size = 4L, endian = "big"),
    "203" = readBin(mp_bytes(rd, 8), "double", 1L, size = 8L, endian = "big"),
    "204" = num(mp_ube(rd, 1)),
    "205" = num(mp_ube(rd, 2)),
    "206" = num(mp_ube(rd, 4)),
    "207" = num(mp_ube(rd, 8)),
    "208" = num(mp_sbe(rd, 1)),
    "209" = num(mp_sbe(rd, 2)),
    "210" = num(mp_sbe(rd, 4)),
    "211" = num(mp_sbe(rd, 8)),
    "217" = mp_utf8(mp_bytes(rd, mp_ube(rd, 1))),
    "218" = mp_utf8(mp_bytes(rd, mp_ube(rd, 2))),
    "219" = mp_utf8(mp_bytes(rd, mp_ube(rd, 4))),
    "220" = mp_read_plain_array(rd, mp_ube(rd, 2)),
    "221" = mp_read_plain_array(rd, mp_ube(rd, 4)),
    "222" = mp_read_plain_map(rd, mp_ube(rd, 2)),
    "223" = mp_read_plain_map(rd, mp_ube(rd, 4)),
    mp_err(sprintf("unsupported msgpack type 0x%02x", h)))
}

mp_read_plain_array <- function(rd, n) {
  out <- vector("list", n)
  for (i in seq_len(n)) {
    v <- mp_read_plain_obj(rd)
    if (!is.null(v)) out[[i]] <- v
  }
  out
}

mp_read_plain_map <- function(rd, n) {
  out <- vector("list", n)
  keys <- character(n)
  for (i in seq_len(n)) {
    k <- mp_read_plain_obj(rd)
    if (!is.character(k) && !is.numeric(k)) mp_err("map keys must be strings")
    keys[i] <- as.character(k)
    v <- mp_read_plain_obj(rd)
    if (!is.null(v)) out[[i]] <- v
  }
  names(out) <- keys
  out
}

# ---- R-value decoder ----------------------------------------------------------

mp_read_value <- function(rd) {
  nk <- mp_read_map_len(rd)
  if (nk < 1 || mp_read_key(rd) != "t") mp_err("an R value must start with key \"t\"")
  t <- mp_read_str(rd)
  if (!(t %in% c("null", mp_native_types, "rds"))) mp_err("unknown R value type \"", t, "\"")
  n <- NA_real_
  attrs <- NULL
  val <- NULL
  got <- t == "null"
  for (i in seq_len(nk - 1)) {
    key <- mp_read_key(rd)
    if (key == "n") {
      n <- mp_read_plain_obj(rd)
      if (!is.numeric(n) || length(n) != 1L || n < 0) mp_err("bad \"n\"")
    } else if (key == "a") {
      attrs <- mp_read_attrs(rd)
    } else if (key == "v") {
      val <- mp_read_v(rd, t)
      got <- TRUE
    } else if (key == "b") {
      if (t == "rds") {
        val <- mp_read_b_rds(rd)
      } else {
        if (is.na(mp_elt_size[t])) mp_err("\"b\" is not allowed for type ", t)
        val <- mp_read_b(rd, t, n)
      }
      got <- TRUE
    } else {
      mp_err("unknown key \"", key, "\" in an R value")
    }
  }
  if (t == "null") return(NULL)
  if (!got) mp_err("R value of type ", t, " has no \"v\" or \"b\"")
  # An rds value's "n" counts the bytes of its serialization.
  if (!is.na(n) && t != "rds" && length(val) != n) {
    mp_err("\"n\" is ", n, " but ", length(val), " elements were read")
  }
  if (!is.null(attrs) && t != "rds") attributes(val) <- attrs
  val
}

mp_read_attrs <- function(rd) {
  n <- mp_read_map_len(rd)
  out <- vector("list", n)
  keys <- character(n)
  for (i in seq_len(n)) {
    keys[i] <- mp_read_str(rd)
    v <- mp_read_value(rd)
    if (!is.null(v)) out[[i]] <- v
  }
  names(out) <- keys
  out
}

mp_read_v <- function(rd, t) {
  switch(t,
    logical = , integer = , double = mp_read_nums(rd, mp_read_array_len(rd), t),
    character = mp_read_chr(rd, mp_read_array_len(rd)),
    complex = mp_read_cplx(rd, mp_read_array_len(rd)),
    raw = mp_bytes(rd, mp_read_bin_len(rd)),
    list = {
      n <- mp_read_array_len(rd)
      out <- vector("list", n)
      for (i in seq_len(n)) {
        v <- mp_read_value(rd)
        if (!is.null(v)) out[[i]] <- v
      }
      out
    },
    rds = unserialize(mp_bytes(rd, mp_read_bin_len(rd))),
    null = { mp_read_plain_obj(rd); NULL },
    mp_err("unknown R value type \"", t, "\""))
}

# Bytes each msgpack number/bool/nil occupies, by its first byte (NA: not one).
mp_num_width <- local({
  w <- rep(NA_integer_, 256)
  w[1:128] <- 1L                       # positive fixint
  w[225:256] <- 1L                     # negative fixint
  w[c(0xc0, 0xc2, 0xc3) + 1] <- 1L     # nil, false, true
  w[c(0xcc, 0xd0) + 1] <- 2L
  w[c(0xcd, 0xd1) + 1] <- 3L
  w[c(0xce, 0xd2, 0xca) + 1] <- 5L
  w[c(0xcf, 0xd3, 0xcb) + 1] <- 9L
  w
})

# n numbers (logical/integer/double elements). The canonical layouts (every
# element 0xcb / 0xd2 / one-byte bool) are decoded with strided indexing; any
# other layout (NA in integers, other writers' int widths and float32) goes
# through mp_read_nums_any().
mp_read_nums <- function(rd, n, t) {
  if (n == 0) return(vector(t, 0L))
  w <- switch(t, logical = 1, integer = 5, double = 9)
  avail <- mp_fill(rd, w * n)
  p <- rd$pos
  if (avail >= w * n) {
    marks <- rd$buf[seq.int(p, by = w, length.out = n)]
    if (t == "logical") {
      if (all(marks == as.raw(0xc2) | marks == as.raw(0xc3) | marks == as.raw(0xc0))) {
        rd$pos <- p + n
        out <- marks == as.raw(0xc3)
        out[marks == as.raw(0xc0)] <- NA
        return(out)
      }
    } else if (all(marks == (if (t == "integer") as.raw(0xd2) else as.raw(0xcb)))) {
      m <- rd$buf[p:(p + w * n - 1)]
      dim(m) <- c(w, n)
      rd$pos <- p + w * n
      return(readBin(m[-1L, ], t, n, size = w - 1, endian = "big"))
    }
  }
  mp_read_nums_any(rd, n, t, min(avail, 9 * n))
}

# Element starts of a run of variable-width numbers, found by pointer doubling
# (no per-element R loop): nxt[p] is where an element starting at p would end;
# composing nxt with itself log2(n) times lists the first n starts.
mp_read_nums_any <- function(rd, n, t, R) {
  if (R < 1) mp_err("truncated numeric array")
  p0 <- rd$pos
  region <- rd$buf[p0:(p0 + R - 1)]
  hb <- as.integer(region)
  wd <- mp_num_width[hb + 1L]
  valid <- !is.na(wd)
  wd[!valid] <- 1L
  J <- c(pmin(seq_len(R) + wd, R + 1), R + 1)
  S <- 1
  while (length(S) < n) {
    S <- c(S, J[S])
    if (length(S) < n) J <- J[J]
  }
  S <- S[seq_len(n)]
  if (any(S > R)) mp_err("truncated numeric array")
  if (!all(valid[S])) mp_err("non-numeric element in a ", t, " vector")
  end <- S[n] + wd[S[n]] - 1
  if (end > R) mp_err("truncated numeric array")
  rd$pos <- p0 + end
  h <- hb[S]
  val <- rep(NA_real_, n)
  fix <- h <= 0x7f
  val[fix] <- h[fix]
  fix <- h >= 0xe0
  val[fix] <- h[fix] - 256
  val[h == 0xc2] <- 0
  val[h == 0xc3] <- 1
  grab <- function(code, k) {
    i <- which(h == code)
    list(i = i, b = region[sequence(rep.int(k, length(i)), from = S[i] + 1)])
  }
  for (code in c(0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3)) {
    k <- switch(as.character(code), "204" = , "208" = 1L, "205" = , "209" = 2L,
                "206" = , "210" = 4L, 8L)
    g <- grab(code, k)
    if (!length(g$i)) next
    val[g$i] <- mp_be_num(matrix(as.integer(g$b), k), code >= 0xd0)
  }
  for (code in c(0xca, 0xcb)) {
    k <- if (code == 0xca) 4L else 8L
    g <- grab(code, k)
    if (length(g$i)) val[g$i] <- readBin(g$b, "double", length(g$i), size = k, endian = "big")
  }
  switch(t,
    logical = { out <- val != 0; out[h == 0xc0] <- NA; out },
    integer = {
      if (any(abs(val) > 2147483647, na.rm = TRUE)) mp_err("integer element out of int32 range")
      as.integer(val)
    },
    double = val)
}

mp_read_cplx <- function(rd, n) {
  if (n == 0) return(complex(0))
  avail <- mp_fill(rd, 19 * n)
  p <- rd$pos
  if (avail >= 19 * n) {
    m <- rd$buf[p:(p + 19 * n - 1)]
    dim(m) <- c(19L, n)
    if (all(m[1L, ] == as.raw(0x92)) && all(m[2L, ] == as.raw(0xcb)) &&
        all(m[11L, ] == as.raw(0xcb))) {
      rd$pos <- p + 19 * n
      return(complex(real = readBin(m[3:10, ], "double", n, size = 8L, endian = "big"),
                     imaginary = readBin(m[12:19, ], "double", n, size = 8L, endian = "big")))
    }
  }
  # Other writers: any number widths; rare enough for a per-element path.
  out <- complex(n)
  for (i in seq_len(n)) {
    if (mp_read_array_len(rd) != 2) mp_err("a complex element must be [re, im]")
    out[i] <- complex(real = mp_read_nums(rd, 1, "double"),
                      imaginary = mp_read_nums(rd, 1, "double"))
  }
  out
}

# Strings. Each start depends on the previous length, so instead of a loop
# the starts are found by pointer doubling over the positions that could
# start a string (a str/bin/nil header byte): nxt maps each such candidate to
# the candidate right after its string, and composing nxt with itself
# log2(n) times lists the starts. This runs over ~1 MiB segments (widened
# for a longer string), each decoded at once: bodies are gathered into a
# NUL-separated buffer that readBin() splits into a character vector.
mp_chr_segment <- 1048576

mp_read_chr <- function(rd, n) {
  if (n <= 8) {
    out <- character(n)
    for (i in seq_len(n)) {
      mp_need(rd, 1)
      if (rd$buf[[rd$pos]] == as.raw(0xc0)) {
        rd$pos <- rd$pos + 1
        out[i] <- NA
      } else {
        out[i] <- mp_read_str(rd, bin = TRUE)
      }
    }
    return(out)
  }
  parts <- list()
  done <- 0
  R <- mp_chr_segment
  while (done < n) {
    avail <- mp_fill(rd, R)
    r <- mp_chr_scan(rd$buf, rd$pos, min(R, avail), n - done)
    if (r$count == 0) {                  # the next string is longer than R
      if (avail < R) mp_err("truncated string array")
      R <- 2 * R
      next
    }
    parts[[length(parts) + 1L]] <- mp_chr_extract(rd$buf, rd$pos - 1, r)
    rd$pos <- rd$pos + r$end
    done <- done + r$count
    R <- mp_chr_segment
  }
  if (length(parts) == 1L) parts[[1L]] else unlist(parts, use.names = FALSE)
}

# Header byte -> bytes of header (0: cannot start a string element).
mp_str_hl <- local({
  h <- integer(256)
  h[0xa0:0xc0 + 1] <- 1L          # fixstr, nil
  h[c(0xd9, 0xc4) + 1] <- 2L      # str8, bin8
  h[c(0xda, 0xc5) + 1] <- 3L
  h[c(0xdb, 0xc6) + 1] <- 5L
  h
})

# Scans R bytes from buf[pos] for at most n strings. Returns the strings that
# lie wholly inside: list(count, body = body offsets, len = byte lengths (-1
# for NA), end = bytes they use).
mp_chr_scan <- function(buf, pos, R, n) {
  none <- list(count = 0)
  if (R < 1) return(none)
  blk <- 1048576
  C <- vector("list", ceiling(R / blk))
  for (i in seq_along(C)) {
    a <- (i - 1) * blk
    hb <- as.integer(buf[(pos + a):(pos + min(R, a + blk) - 1)])
    C[[i]] <- which(mp_str_hl[hb + 1L] > 0L) + a
  }
  C <- unlist(C, use.names = FALSE)
  if (!length(C) || C[1] != 1) {
    mp_err(sprintf("expected a string in a character vector, found 0x%02x",
                   as.integer(buf[[pos]])))
  }
  h <- as.integer(buf[pos - 1 + C])
  hl <- mp_str_hl[h + 1L]
  len <- h - 0xa0
  len[h == 0xc0L] <- 0
  long <- which(hl > 1L)
  if (length(long)) {
    # Length bytes of str8/16/32 (0 when they fall outside the region).
    at <- function(k) {
      q <- C[long] + k
      v <- integer(length(q))
      v[q <= R] <- as.integer(buf[pos - 1 + q[q <= R]])
      v
    }
    hk <- hl[long]
    b1 <- at(1)
    v <- b1
    if (any(hk > 2L)) {
      v <- ifelse(hk == 3L, b1 * 256 + at(2), v)
      if (any(hk == 5L)) {
        v <- ifelse(hk == 5L, ((b1 * 256 + at(2)) * 256 + at(3)) * 256 + at(4), v)
      }
    }
    len[long] <- v
  }
  nx <- C + hl + len                         # where the next element starts
  nx[C + hl - 1 > R] <- R + 2                # header cut by the region's end
  K <- length(C)
  j <- findInterval(nx, C)                   # C is sorted: j is nx's slot if any
  J <- c(ifelse(j > 0L & C[pmax(j, 1L)] == nx, j, K + 1L), K + 1L)
  m <- min(n, K)
  S <- 1L
  while (length(S) < m) {
    S <- c(S, J[S])
    if (length(S) < m) J <- J[J]
  }
  S <- S[seq_len(m)]
  cnt <- m
  out <- which(S > K)
  if (length(out)) {
    cnt <- out[1] - 1                        # S[cnt]'s successor is not a string
    if (nx[S[cnt]] <= R) mp_err("malformed string array")
  }
  if (nx[S[cnt]] - 1 > R) cnt <- cnt - 1     # the last one runs past the region
  if (cnt == 0) return(none)
  S <- S[seq_len(cnt)]
  list(count = cnt, body = C[S] + hl[S], len = ifelse(h[S] == 0xc0L, -1, len[S]),
       end = nx[S[cnt]] - 1)
}

# The strings of a scan: bodies gathered into one NUL-separated buffer.
mp_chr_extract <- function(buf, base, r) {
  ok <- r$len >= 0
  out <- rep(NA_character_, r$count)
  if (any(ok)) {
    L <- r$len[ok]
    m <- length(L)
    body <- buf[sequence(L, from = base + r$body[ok])]
    if (any(body == as.raw(0))) mp_err("strings must not contain NUL")
    tmp <- raw(sum(L) + m)
    tmp[sequence(L, from = cumsum(L + 1) - L)] <- body
    s <- readBin(tmp, "character", m)
    Encoding(s) <- "UTF-8"
    out[ok] <- s
  }
  out
}

# "b" of an rds value: its serialization in chunks, streamed into a file
# and unserialized from there (a document in memory is joined instead).
mp_read_b_rds <- function(rd) {
  nchunks <- mp_read_array_len(rd)
  if (is.null(rd$con)) {
    parts <- lapply(seq_len(nchunks), function(i) mp_bytes(rd, mp_read_bin_len(rd)))
    return(unserialize(do.call(c, c(list(raw(0)), parts))))
  }
  tmp <- tempfile("mp-rds-")
  on.exit(unlink(tmp), add = TRUE)
  out <- file(tmp, "wb")
  for (i in seq_len(nchunks)) {
    left <- mp_read_bin_len(rd)
    while (left > 0) {
      piece <- mp_bytes(rd, min(left, mp_piece_bytes))
      writeBin(piece, out)
      left <- left - length(piece)
    }
  }
  close(out)
  src <- file(tmp, "rb")
  on.exit(close(src), add = TRUE, after = FALSE)
  unserialize(src)
}

# "b": streams chunks into one preallocated vector. Files are read straight
# from the connection (the reader's window is dropped and re-seeked), in
# ~1 MiB pieces; the vector temporarily gets dim c(piece, npieces) because
# column assignment (x[, j] <- v) is several times faster than x[a:b] <- v.
mp_read_b <- function(rd, t, n) {
  size <- mp_elt_size[[t]]
  nchunks <- mp_read_array_len(rd)
  con <- rd$con
  if (!is.null(con)) {
    at <- rd$off + rd$pos - 1
    seek(con, where = at, rw = "read")
    rd$buf <- raw(0)
    rd$pos <- 1
    rd$len <- 0
    rd$off <- at
  }
  left_chunks <- nchunks
  left <- 0                              # elements left in the current chunk
  hdr <- function(k) if (is.null(con)) mp_bytes(rd, k) else readBin(con, "raw", k)
  next_chunk <- function() {
    if (left_chunks == 0) mp_err("\"b\" holds fewer elements than \"n\"")
    h <- as.integer(hdr(1))
    k <- c(1, 2, 4)[match(h, c(0xc4, 0xc5, 0xc6))]
    if (length(k) != 1L) mp_err("truncated \"b\"")
    if (is.na(k)) mp_err("a \"b\" chunk must be bin")
    b <- as.integer(hdr(k))
    if (length(b) != k) mp_err("truncated \"b\"")
    bytes <- sum(b * 256^((k - 1):0))
    if (bytes %% size != 0) mp_err("chunk of ", bytes, " bytes is not a multiple of ", size)
    left_chunks <<- left_chunks - 1
    left <<- bytes / size
  }
  since_gc <- 0
  # One piece freed per collection (see mp_read_piece_bytes); a vector of
  # one chunk is read at once, with no pieces.
  piece <- mp_read_piece_bytes %/% size
  gc_every <- if (is.na(n) || nchunks <= 1) Inf else piece * size
  take <- function(k) {
    since_gc <<- since_gc + k * size
    if (since_gc >= gc_every) {
      gc(verbose = FALSE, full = FALSE)
      since_gc <<- 0
    }
    if (is.null(con)) {
      v <- readBin(mp_bytes(rd, k * size), t, k, size = size, endian = "little")
    } else {
      v <- readBin(con, t, k, size = size, endian = "little")
      if (length(v) != k) mp_err("truncated \"b\" chunk")
    }
    left <<- left - k
    v
  }
  # k elements, across chunk boundaries if need be.
  elems <- function(k) {
    while (left == 0 && left_chunks > 0) next_chunk()
    if (k <= left) return(take(k))
    parts <- list()
    while (k > 0) {
      while (left == 0) next_chunk()
      m <- min(k, left)
      parts[[length(parts) + 1L]] <- take(m)
      k <- k - m
    }
    do.call(c, parts)
  }
  finish <- function(out) {
    force(out)   # read the data before checking what is left
    while (left == 0 && left_chunks > 0) next_chunk()   # trailing empty chunks
    if (left != 0 || left_chunks != 0) mp_err("\"b\" holds more elements than \"n\"")
    if (!is.null(con)) rd$off <- seek(con, rw = "read")
    out
  }

  if (is.na(n)) {
    # No "n" before "b" (other writers): collect the chunks, then join them.
    parts <- vector("list", nchunks)
    for (i in seq_len(nchunks)) {
      next_chunk()
      parts[[i]] <- take(left)
    }
    return(finish(if (nchunks) do.call(c, parts) else vector(t, 0L)))
  }
  if (n == 0) return(finish(vector(t, 0L)))
  if (nchunks == 1) return(finish(elems(n)))   # one chunk: no copy at all
  out <- vector(t, n)
  d <- mp_piece_divisor(n, piece)
  if (!is.na(d)) {
    dim(out) <- c(d, n / d)
    for (j in seq_len(n / d)) out[, j] <- elems(d)
    dim(out) <- NULL
  } else if (n <= .Machine$integer.max) {
    dim(out) <- c(n, 1L)
    a <- 1L
    while (a <= n) {
      b <- as.integer(min(n, a + piece - 1))
      out[a:b, 1L] <- elems(b - a + 1L)
      a <- b + 1L
    }
    dim(out) <- NULL
  } else {
    a <- 1
    while (a <= n) {
      b <- min(n, a + piece - 1)
      out[a:b] <- elems(b - a + 1)
      a <- b + 1
    }
  }
  finish(out)
}

# A divisor of n near the target piece length (or NA) so that the vector can
# be viewed as a matrix of whole pieces.
# The search runs over piece counts (n / d), which are few, rather than over
# lengths, which are many for a large target.
mp_piece_divisor <- function(n, target) {
  np <- seq.int(max(1, ceiling(n / (4 * target))), max(1, floor(8 * n / target)))
  np <- np[n %% np == 0]
  if (!length(np)) return(NA)
  d <- n / np
  d <- d[which.min(abs(log(d / target)))]
  if (n / d > .Machine$integer.max || d > .Machine$integer.max) NA else d
}

# ---- public API ---------------------------------------------------------------

# R value -> raw vector (canonical R-value msgpack).
mp_pack <- function(x) {
  w <- mp_writer()
  mp_enc_value(x, w)
  w$result()
}

# raw vector -> R value.
mp_unpack <- function(raw) {
  if (!is.raw(raw)) stop("mp_unpack() needs a raw vector", call. = FALSE)
  rd <- mp_reader(raw)
  v <- mp_read_value(rd)
  if (rd$pos <= rd$len) mp_err(rd$len - rd$pos + 1, " trailing bytes after the document")
  v
}

# Writes x to path, streaming large vectors without copying them.
mp_write <- function(x, path) {
  con <- file(path, "wb")
  on.exit(close(con))
  w <- mp_writer(con)
  mp_enc_value(x, w)
  w$flush()
  invisible(path)
}

# Reads an R value from path; "b" vectors are read into one preallocated vector.
mp_read <- function(path) {
  con <- file(path, "rb")
  on.exit(close(con))
  rd <- mp_reader(raw(0), con)
  v <- tryCatch(mp_read_value(rd), error = function(e) {
    stop(conditionMessage(e), " (", path, ")", call. = FALSE)
  })
  if (mp_fill(rd, 1) > 0) mp_err("trailing bytes after the document (", path, ")")
  v
}

# A verified read of a blob file by path (docs/ARCHITECTURE.md, "Verified
# stamps"): the engine hashed the file, or found it unchanged since it was
# hashed, and gives its stamp (size, and mtime and ctime in seconds as
# file.info() gives them). Any write to the file changes its ctime, so the
# file's stat, equal to the stamp after the read, means the bytes read are
# the ones verified; it is checked before too, so that a damaged file is not
# decoded (a broken length could ask for any amount of memory). what names
# the artifact in the error.
mp_stamp_differs <- function(path, stamp) {
  fi <- file.info(path, extra_cols = FALSE)
  # .subset2 and unclass: the runtime runs uncompiled, where `$` on a data
  # frame and as.numeric() on a time would cost more than the stat.
  size <- .subset2(fi, "size")
  if (is.na(size)) return("is missing")
  if (size != stamp$size || abs(unclass(.subset2(fi, "mtime")) - stamp$mtime) > 1e-6 ||
      abs(unclass(.subset2(fi, "ctime")) - stamp$ctime) > 1e-6) {
    return("no longer has the size and times it was verified with")
  }
  NULL
}

mp_read_verified <- function(path, stamp, what) {
  if (is.null(stamp) || is.null(stamp$size) || is.null(stamp$mtime) || is.null(stamp$ctime)) {
    stop(sprintf("%s was not verified against its content address (its file %s comes without a stamp): it is not read",
                 what, path), call. = FALSE)
  }
  # The error's class, mp_stamp_error, lets the client ask the engine to
  # verify the file again.
  check <- function() {
    why <- mp_stamp_differs(path, stamp)
    if (!is.null(why)) {
      msg <- sprintf(paste0("%s changed after it was verified against its content address: ",
                            "its file %s %s (the blob may be corrupt): it is not read"),
                     what, path, why)
      stop(structure(class = c("mp_stamp_error", "error", "condition"),
                     list(message = msg, call = NULL)))
    }
  }
  check()
  # A small file (its size is the stamp's) is read in one call and decoded
  # in memory, which costs less than the two checks save.
  ok <- FALSE
  v <- tryCatch({
    v <- if (stamp$size <= mp_read_ahead) mp_unpack(readBin(path, "raw", stamp$size + 1)) else mp_read(path)
    ok <- TRUE
    v
  }, error = function(e) e)
  check()
  if (!ok) {
    msg <- conditionMessage(v)
    if (!grepl(path, msg, fixed = TRUE)) msg <- paste0(msg, " (", path, ")")
    stop(msg, call. = FALSE)
  }
  v
}

# Plain msgpack: named lists and named vectors -> maps, unnamed lists -> arrays,
# NULL -> nil, length-1 atomic vectors -> scalars, longer ones -> arrays,
# raw -> bin, factors -> their labels, NA -> nil.
mp_pack_plain <- function(x) {
  w <- mp_writer()
  mp_enc_plain(x, w)
  w$result()
}

mp_enc_plain <- function(x, w) {
  if (is.null(x)) return(w$emit(as.raw(0xc0)))
  if (is.list(x)) {
    nm <- names(x)
    x <- unclass(x)
    if (!is.null(nm)) {
      w$emit(mp_hdr_map(length(x)))
      for (i in seq_along(x)) {
        w$emit(mp_str1(nm[i]))
        mp_enc_plain(x[[i]], w)
      }
    } else {
      w$emit(mp_hdr_array(length(x)))
      for (el in x) mp_enc_plain(el, w)
    }
    return(invisible(NULL))
  }
  if (is.factor(x)) x <- as.character(x)
  if (!is.atomic(x)) stop("mp_pack_plain(): cannot encode a ", typeof(x), call. = FALSE)
  nm <- names(x)
  if (is.raw(x)) {
    x <- as.vector(x)
    return(w$emit(c(mp_hdr_bin(length(x)), x)))
  }
  x <- as.vector(x)
  el <- switch(typeof(x),
    logical = mp_enc_lgl(x),
    integer = mp_enc_int_small(x),
    double = mp_enc_dbl(x, na_nil = TRUE),
    character = mp_enc_chr(x),
    stop("mp_pack_plain(): cannot encode a ", typeof(x), " vector", call. = FALSE))
  if (!is.null(nm)) {
    if (anyNA(nm)) stop("mp_pack_plain(): NA names", call. = FALSE)
    w$emit(mp_hdr_map(length(x)))
    return(w$emit(mp_interleave(mp_enc_chr(nm), el)))
  }
  if (length(x) != 1L) w$emit(mp_hdr_array(length(x)))
  w$emit(el$bytes)
}

mp_unpack_plain <- function(raw) {
  if (!is.raw(raw)) stop("mp_unpack_plain() needs a raw vector", call. = FALSE)
  rd <- mp_reader(raw)
  v <- mp_read_plain_obj(rd)
  if (rd$pos <= rd$len) mp_err(rd$len - rd$pos + 1, " trailing bytes after the document")
  v
}

mp_write_plain <- function(x, path) {
  writeBin(mp_pack_plain(x), path)
  invisible(path)
}

mp_read_plain <- function(path) {
  size <- file.size(path)
  if (is.na(size)) stop("cannot read ", path, ": no such file", call. = FALSE)
  tryCatch(mp_unpack_plain(readBin(path, "raw", size)), error = function(e) {
    stop(conditionMessage(e), " (", path, ")", call. = FALSE)
  })
}
