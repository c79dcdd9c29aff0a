{
  "targets": [
    {
      "target_name": "sparse_ranges",
      "sources": ["toolkit/native/sparse_ranges.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
