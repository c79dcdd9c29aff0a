/*
 * dataRanges(fd, from, to, maxRanges): where a file holds data, as lseek(2) SEEK_DATA/SEEK_HOLE
 * report it. Returns [start0, end0, start1, end1, ...] for at most maxRanges ranges of data
 * inside [from, to); everything between them is a hole and reads as zeros. Node has no binding
 * for these whence values, and without them a sparse raw disk must be read whole.
 *
 * Throws an Error whose `code` is the errno name when lseek fails; a file system that cannot
 * tell (EINVAL, EOPNOTSUPP) makes the caller treat the whole file as data.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <node_api.h>

static const char *errno_code(int error) {
  switch (error) {
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENXIO: return "ENXIO";
    case EOVERFLOW: return "EOVERFLOW";
    case ESPIPE: return "ESPIPE";
#if defined(EOPNOTSUPP)
    case EOPNOTSUPP: return "EOPNOTSUPP";
#endif
    default: return "EIO";
  }
}

static napi_value throw_errno(napi_env env, const char *call, int error) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", call, strerror(error));
  napi_throw_error(env, errno_code(error), message);
  return NULL;
}

static int get_int64(napi_env env, napi_value value, int64_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) return 0;
  return napi_get_value_int64(env, value, out) == napi_ok;
}

static napi_value data_ranges(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int64_t fd, from, to, max_ranges;
  if (argc < 4 || !get_int64(env, argv[0], &fd) || !get_int64(env, argv[1], &from) || !get_int64(env, argv[2], &to) ||
      !get_int64(env, argv[3], &max_ranges) || fd < 0 || from < 0 || to < from || max_ranges < 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "dataRanges(fd, from, to, maxRanges): non-negative integers, from <= to, maxRanges >= 1");
    return NULL;
  }
  napi_value result;
  if (napi_create_array(env, &result) != napi_ok) return NULL;
  uint32_t index = 0;
  off_t position = (off_t)from;
  while (position < (off_t)to && index / 2 < (uint64_t)max_ranges) {
    off_t data = lseek((int)fd, position, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* no data at or after position */
      return throw_errno(env, "lseek(SEEK_DATA)", errno);
    }
    if (data >= (off_t)to) break;
    off_t hole = lseek((int)fd, data, SEEK_HOLE);
    if (hole < 0) return throw_errno(env, "lseek(SEEK_HOLE)", errno);
    if (hole > (off_t)to) hole = (off_t)to;
    if (hole <= data) break; /* the file shrank under us: report what was found */
    napi_value start_value, end_value;
    if (napi_create_int64(env, (int64_t)data, &start_value) != napi_ok ||
        napi_create_int64(env, (int64_t)hole, &end_value) != napi_ok ||
        napi_set_element(env, result, index++, start_value) != napi_ok ||
        napi_set_element(env, result, index++, end_value) != napi_ok) {
      return NULL;
    }
    position = hole;
  }
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "dataRanges", NAPI_AUTO_LENGTH, data_ranges, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "dataRanges", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
