{
  "targets": [
    {
      "target_name": "strata_fuse3",
      "sources": ["native/fuse3.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(pkg-config --cflags-only-I fuse3 | sed s/-I//g)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
