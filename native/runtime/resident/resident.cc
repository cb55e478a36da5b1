// Tensors that stay where the step runs between runs — CUDA memory on a GPU — so that parameters, gradients and
// AdamW's moments do not cross to the host and back every step. onnxruntime-node cannot do this (its outputs always
// come back to the host, and `preferredOutputLocation: 'gpu-buffer'` fails with the CUDA provider in 1.29), so this
// addon uses onnxruntime's C API with IoBinding on the same libonnxruntime that onnxruntime-node loads (its path comes
// from JavaScript). It needs no onnxruntime header: the few OrtApi slots it calls are declared in ort-api.h.
//
// One context per device holds named tensors (the state) and sessions. A run binds state tensors and host tensors as
// inputs, binds outputs either to the device (they replace state tensors once the run is done) or to the host (they
// come back to JavaScript), and runs off the main thread.
#include <dlfcn.h>
#include <node_api.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ort-api.h"

namespace {

const OrtApi* api = nullptr;
OrtAllocator* hostAllocator = nullptr;  // onnxruntime's default CPU allocator
std::string version;

// An OrtStatus as a C++ exception whose message is onnxruntime's.
struct OrtError {
  std::string message;
};

void check(OrtStatus* s) {
  if (!s) return;
  std::string m = api->GetErrorMessage(s);
  api->ReleaseStatus(s);
  throw OrtError{m};
}

struct Value {
  OrtValue* v = nullptr;
  bool onDevice = false;  // in CUDA memory (read back through the identity session)
  explicit Value(OrtValue* x = nullptr, bool device = false) : v(x), onDevice(device) {}
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  ~Value() {
    if (v) api->ReleaseValue(v);
  }
};

struct Tensor {
  ONNXTensorElementDataType type;
  std::vector<int64_t> shape;
  size_t bytes;
};

size_t elementBytes(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_FLOAT: case ONNX_INT32: case ONNX_UINT32: return 4;
    case ONNX_DOUBLE: case ONNX_INT64: case ONNX_UINT64: return 8;
    case ONNX_FLOAT16: case ONNX_BFLOAT16: case ONNX_INT16: case ONNX_UINT16: return 2;
    case ONNX_INT8: case ONNX_UINT8: case ONNX_BOOL: return 1;
    default: throw OrtError{"unsupported tensor element type " + std::to_string(static_cast<int>(t))};
  }
}

Tensor describe(const OrtValue* v) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  check(api->GetTensorTypeAndShape(v, &info));
  Tensor t{};
  size_t rank = 0, count = 0;
  try {
    check(api->GetTensorElementType(info, &t.type));
    check(api->GetDimensionsCount(info, &rank));
    t.shape.resize(rank);
    check(api->GetDimensions(info, t.shape.data(), rank));
    check(api->GetTensorShapeElementCount(info, &count));
  } catch (...) {
    api->ReleaseTensorTypeAndShapeInfo(info);
    throw;
  }
  api->ReleaseTensorTypeAndShapeInfo(info);
  t.bytes = count * elementBytes(t.type);
  return t;
}

struct Session {
  OrtSession* session = nullptr;
  ~Session() {
    if (session) api->ReleaseSession(session);
  }
};

struct Context {
  bool cuda = false;
  bool readBack = false;  // run outputs are read back through the identity session (CUDA; tests on the CPU)
  OrtEnv* env = nullptr;
  OrtMemoryInfo* host = nullptr;    // where host outputs go
  OrtMemoryInfo* device = nullptr;  // where state outputs go (the host's on the CPU)
  std::vector<std::unique_ptr<Session>> sessions;
  std::unique_ptr<Session> identity;  // copies a device tensor to the host
  std::map<std::string, std::unique_ptr<Value>> state;
  bool busy = false;
  ~Context() {
    state.clear();
    sessions.clear();
    identity.reset();
    if (device && device != host) api->ReleaseMemoryInfo(device);
    if (host) api->ReleaseMemoryInfo(host);
    if (env) api->ReleaseEnv(env);
  }
};

// ——— N-API helpers ———

#define NAPI_CALL(env, call)                                              \
  do {                                                                    \
    if ((call) != napi_ok) {                                              \
      const napi_extended_error_info* info = nullptr;                     \
      napi_get_last_error_info((env), &info);                             \
      throw OrtError{std::string("N-API: ") +                             \
                     (info && info->error_message ? info->error_message   \
                                                  : "call failed")};      \
    }                                                                     \
  } while (0)

std::string str(napi_env env, napi_value v) {
  size_t n = 0;
  NAPI_CALL(env, napi_get_value_string_utf8(env, v, nullptr, 0, &n));
  std::vector<char> buf(n + 1);
  NAPI_CALL(env, napi_get_value_string_utf8(env, v, buf.data(), buf.size(), &n));
  return std::string(buf.data(), n);
}

napi_value prop(napi_env env, napi_value obj, const char* name) {
  napi_value v;
  NAPI_CALL(env, napi_get_named_property(env, obj, name, &v));
  return v;
}

bool has(napi_env env, napi_value obj, const char* name) {
  bool b = false;
  NAPI_CALL(env, napi_has_named_property(env, obj, name, &b));
  if (!b) return false;
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, prop(env, obj, name), &t));
  return t != napi_undefined && t != napi_null;
}

int32_t i32(napi_env env, napi_value v) {
  int32_t x = 0;
  NAPI_CALL(env, napi_get_value_int32(env, v, &x));
  return x;
}

bool boolean(napi_env env, napi_value v) {
  bool x = false;
  NAPI_CALL(env, napi_get_value_bool(env, v, &x));
  return x;
}

std::vector<std::string> keys(napi_env env, napi_value obj) {
  napi_value names;
  NAPI_CALL(env, napi_get_property_names(env, obj, &names));
  uint32_t n = 0;
  NAPI_CALL(env, napi_get_array_length(env, names, &n));
  std::vector<std::string> out;
  for (uint32_t i = 0; i < n; i++) {
    napi_value k;
    NAPI_CALL(env, napi_get_element(env, names, i, &k));
    out.push_back(str(env, k));
  }
  return out;
}

const std::map<std::string, ONNXTensorElementDataType> DTYPES = {
    {"float32", ONNX_FLOAT}, {"float16", ONNX_FLOAT16}, {"float64", ONNX_DOUBLE}, {"int64", ONNX_INT64},
    {"int32", ONNX_INT32},   {"int8", ONNX_INT8},       {"uint8", ONNX_UINT8},    {"bool", ONNX_BOOL},
};

const char* dtypeName(ONNXTensorElementDataType t) {
  for (auto& [k, v] : DTYPES)
    if (v == t) return k.c_str();
  return "unknown";
}

// A host tensor from JavaScript ({dtype, shape, data}) as an OrtValue that owns a copy of its bytes.
OrtValue* fromHost(napi_env env, napi_value t, const std::string& what) {
  std::string dtype = str(env, prop(env, t, "dtype"));
  auto it = DTYPES.find(dtype);
  if (it == DTYPES.end()) throw OrtError{what + ": unsupported dtype " + dtype};
  napi_value shapeV = prop(env, t, "shape");
  uint32_t rank = 0;
  NAPI_CALL(env, napi_get_array_length(env, shapeV, &rank));
  std::vector<int64_t> shape(rank);
  size_t count = 1;
  for (uint32_t i = 0; i < rank; i++) {
    napi_value d;
    NAPI_CALL(env, napi_get_element(env, shapeV, i, &d));
    int64_t x = 0;
    NAPI_CALL(env, napi_get_value_int64(env, d, &x));
    if (x < 0) throw OrtError{what + ": negative dimension"};
    shape[i] = x;
    count *= static_cast<size_t>(x);
  }
  napi_value data = prop(env, t, "data");
  bool isTyped = false;
  NAPI_CALL(env, napi_is_typedarray(env, data, &isTyped));
  if (!isTyped) throw OrtError{what + ": data is not a typed array"};
  napi_typedarray_type tt;
  size_t length = 0, offset = 0;
  void* bytes = nullptr;
  napi_value ab;
  NAPI_CALL(env, napi_get_typedarray_info(env, data, &tt, &length, &bytes, &ab, &offset));
  size_t want = count * elementBytes(it->second);
  size_t have = length * (tt == napi_int8_array || tt == napi_uint8_array || tt == napi_uint8_clamped_array ? 1
                          : tt == napi_int16_array || tt == napi_uint16_array                            ? 2
                          : tt == napi_float64_array || tt == napi_bigint64_array || tt == napi_biguint64_array
                              ? 8
                              : 4);
  if (have != want)
    throw OrtError{what + ": " + std::to_string(have) + " bytes of data for " + std::to_string(want) +
                   " bytes of " + dtype};
  OrtValue* v = nullptr;
  check(api->CreateTensorAsOrtValue(hostAllocator, shape.data(), rank, it->second, &v));
  void* dst = nullptr;
  try {
    check(api->GetTensorMutableData(v, &dst));
  } catch (...) {
    api->ReleaseValue(v);
    throw;
  }
  if (want) std::memcpy(dst, bytes, want);
  return v;
}


// An OrtValue in host memory as a JavaScript {dtype, shape, data} (the bytes copied).
napi_value toHost(napi_env env, const OrtValue* v) {
  Tensor t = describe(v);
  void* src = nullptr;
  check(api->GetTensorMutableData(const_cast<OrtValue*>(v), &src));
  void* dst = nullptr;
  napi_value ab;
  NAPI_CALL(env, napi_create_arraybuffer(env, t.bytes, &dst, &ab));
  if (t.bytes) std::memcpy(dst, src, t.bytes);
  napi_typedarray_type tt;
  size_t n = t.bytes / elementBytes(t.type);
  switch (t.type) {
    case ONNX_FLOAT: tt = napi_float32_array; break;
    case ONNX_DOUBLE: tt = napi_float64_array; break;
    case ONNX_INT64: tt = napi_bigint64_array; break;
    case ONNX_INT32: tt = napi_int32_array; break;
    case ONNX_FLOAT16: tt = napi_uint16_array; break;
    case ONNX_INT8: tt = napi_int8_array; break;
    case ONNX_UINT8: case ONNX_BOOL: tt = napi_uint8_array; break;
    default: throw OrtError{std::string("cannot return a tensor of ") + dtypeName(t.type)};
  }
  napi_value data, out, shape, dtype;
  NAPI_CALL(env, napi_create_typedarray(env, tt, n, ab, 0, &data));
  NAPI_CALL(env, napi_create_array_with_length(env, t.shape.size(), &shape));
  for (size_t i = 0; i < t.shape.size(); i++) {
    napi_value d;
    NAPI_CALL(env, napi_create_int64(env, t.shape[i], &d));
    NAPI_CALL(env, napi_set_element(env, shape, static_cast<uint32_t>(i), d));
  }
  NAPI_CALL(env, napi_create_string_utf8(env, dtypeName(t.type), NAPI_AUTO_LENGTH, &dtype));
  NAPI_CALL(env, napi_create_object(env, &out));
  NAPI_CALL(env, napi_set_named_property(env, out, "dtype", dtype));
  NAPI_CALL(env, napi_set_named_property(env, out, "shape", shape));
  NAPI_CALL(env, napi_set_named_property(env, out, "data", data));
  return out;
}

Context* unwrap(napi_env env, napi_value v) {
  void* p = nullptr;
  NAPI_CALL(env, napi_get_value_external(env, v, &p));
  if (!p) throw OrtError{"this device context is released"};
  return static_cast<Context*>(p);
}

// Session options: the graph's folder for external weights, optimisation level, memory pattern, threads, profiling
// (written when the session is released), and on CUDA
// the provider options that onnxruntime-node cannot pass (arena growth, TF32, the device).
OrtSession* createSession(Context* c, napi_env env, napi_value bytes, napi_value opts) {
  void* data = nullptr;
  size_t length = 0;
  NAPI_CALL(env, napi_get_typedarray_info(env, bytes, nullptr, &length, &data, nullptr, nullptr));
  OrtSessionOptions* so = nullptr;
  check(api->CreateSessionOptions(&so));
  OrtSession* s = nullptr;
  OrtCUDAProviderOptionsV2* cuda = nullptr;
  try {
    check(api->SetSessionGraphOptimizationLevel(so, static_cast<GraphOptimizationLevel>(
                                                        i32(env, prop(env, opts, "optimization")))));
    if (boolean(env, prop(env, opts, "memPattern")))
      check(api->EnableMemPattern(so));
    else
      check(api->DisableMemPattern(so));
    if (has(env, opts, "profilePrefix"))
      check(api->EnableProfiling(so, str(env, prop(env, opts, "profilePrefix")).c_str()));
    if (has(env, opts, "threads")) check(api->SetIntraOpNumThreads(so, i32(env, prop(env, opts, "threads"))));
    napi_value config = prop(env, opts, "config");
    for (auto& k : keys(env, config)) check(api->AddSessionConfigEntry(so, k.c_str(), str(env, prop(env, config, k.c_str())).c_str()));
    if (c->cuda) {
      napi_value cudaOpts = prop(env, opts, "cuda");
      std::vector<std::string> ks = keys(env, cudaOpts), vs;
      for (auto& k : ks) vs.push_back(str(env, prop(env, cudaOpts, k.c_str())));
      std::vector<const char*> kp, vp;
      for (size_t i = 0; i < ks.size(); i++) kp.push_back(ks[i].c_str()), vp.push_back(vs[i].c_str());
      check(api->CreateCUDAProviderOptions(&cuda));
      check(api->UpdateCUDAProviderOptions(cuda, kp.data(), vp.data(), kp.size()));
      check(api->SessionOptionsAppendExecutionProvider_CUDA_V2(so, cuda));
    }
    check(api->CreateSessionFromArray(c->env, data, length, so, &s));
  } catch (...) {
    if (cuda) api->ReleaseCUDAProviderOptions(cuda);
    api->ReleaseSessionOptions(so);
    throw;
  }
  if (cuda) api->ReleaseCUDAProviderOptions(cuda);
  api->ReleaseSessionOptions(so);
  return s;
}

// ——— the functions JavaScript calls ———

template <typename F>
napi_value guarded(napi_env env, F f) {
  try {
    return f();
  } catch (const OrtError& e) {
    napi_throw_error(env, nullptr, e.message.c_str());
    return nullptr;
  }
}

std::vector<napi_value> args(napi_env env, napi_callback_info info, size_t n) {
  std::vector<napi_value> a(n);
  size_t got = n;
  NAPI_CALL(env, napi_get_cb_info(env, info, &got, a.data(), nullptr, nullptr));
  if (got < n) throw OrtError{"expected " + std::to_string(n) + " arguments, got " + std::to_string(got)};
  return a;
}

// load(libraryPath): finds OrtGetApiBase in onnxruntime's library; returns its version.
napi_value Load(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 1);
    std::string path = str(env, a[0]);
    if (!api) {
      void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!lib) throw OrtError{std::string("cannot load ") + path + ": " + dlerror()};
      auto getBase = reinterpret_cast<const OrtApiBase* (*)()>(dlsym(lib, "OrtGetApiBase"));
      if (!getBase) throw OrtError{path + " has no OrtGetApiBase"};
      const OrtApi* found = static_cast<const OrtApi*>(getBase()->GetApi(ORT_API_VERSION_USED));
      if (!found) throw OrtError{path + " does not offer onnxruntime's C API version " + std::to_string(ORT_API_VERSION_USED)};
      api = found;
      check(api->GetAllocatorWithDefaultOptions(&hostAllocator));
      version = getBase()->GetVersionString();
    }
    napi_value v;
    NAPI_CALL(env, napi_create_string_utf8(env, version.c_str(), NAPI_AUTO_LENGTH, &v));
    return v;
  });
}

void finalizeContext(napi_env, void* data, void*) { delete static_cast<Context*>(data); }

// createContext({ device: 'cpu' | 'cuda', deviceId, identity?: bytes of a float32 Identity graph (CUDA: required),
// identityOptions })
napi_value CreateContext(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    if (!api) throw OrtError{"load() onnxruntime first"};
    auto a = args(env, info, 1);
    auto c = std::make_unique<Context>();
    c->cuda = str(env, prop(env, a[0], "device")) == "cuda";
    check(api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "delta-studio-resident", &c->env));
    check(api->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &c->host));
    if (c->cuda)
      check(api->CreateMemoryInfo("Cuda", OrtArenaAllocator, i32(env, prop(env, a[0], "deviceId")), OrtMemTypeDefault,
                                  &c->device));
    else
      c->device = c->host;
    // On the CPU a tensor can be read directly; given the identity graph there too, a context reads back as on CUDA
    // (the tests' way to run that path without a GPU).
    if (c->cuda && !has(env, a[0], "identity"))
      throw OrtError{"a CUDA context needs the identity graph to read tensors back"};
    if (has(env, a[0], "identity")) {
      c->readBack = true;
      c->identity = std::make_unique<Session>();
      c->identity->session = createSession(c.get(), env, prop(env, a[0], "identity"), prop(env, a[0], "identityOptions"));
    }
    napi_value out;
    Context* raw = c.release();
    if (napi_create_external(env, raw, finalizeContext, nullptr, &out) != napi_ok) {
      delete raw;
      throw OrtError{"N-API: cannot wrap the context"};
    }
    return out;
  });
}

// addSession(ctx, bytes, options) → the session's index in the context
napi_value AddSession(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 3);
    Context* c = unwrap(env, a[0]);
    auto s = std::make_unique<Session>();
    s->session = createSession(c, env, a[1], a[2]);
    c->sessions.push_back(std::move(s));
    napi_value v;
    NAPI_CALL(env, napi_create_uint32(env, static_cast<uint32_t>(c->sessions.size() - 1), &v));
    return v;
  });
}

// setState(ctx, name, tensor): a host copy, which the next run that binds it takes to the device.
napi_value SetState(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 3);
    Context* c = unwrap(env, a[0]);
    if (c->busy) throw OrtError{"a run is in progress: state cannot change under it"};
    std::string name = str(env, a[1]);
    c->state[name] = std::make_unique<Value>(fromHost(env, a[2], name));
    return nullptr;
  });
}

// deleteState(ctx, name)
napi_value DeleteState(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 2);
    Context* c = unwrap(env, a[0]);
    if (c->busy) throw OrtError{"a run is in progress: state cannot change under it"};
    c->state.erase(str(env, a[1]));
    return nullptr;
  });
}

// getState(ctx, name) → a host copy ({dtype, shape, data}); a tensor in CUDA memory goes through the identity graph.
napi_value GetState(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 2);
    Context* c = unwrap(env, a[0]);
    if (c->busy) throw OrtError{"a run is in progress"};
    std::string name = str(env, a[1]);
    auto it = c->state.find(name);
    if (it == c->state.end()) throw OrtError{"no state tensor \"" + name + "\""};
    if (!it->second->onDevice) return toHost(env, it->second->v);
    OrtIoBinding* b = nullptr;
    check(api->CreateIoBinding(c->identity->session, &b));
    OrtValue** outs = nullptr;
    size_t n = 0;
    try {
      check(api->BindInput(b, "x", it->second->v));
      check(api->BindOutputToDevice(b, "y", c->host));
      check(api->RunWithBinding(c->identity->session, nullptr, b));
      check(api->GetBoundOutputValues(b, hostAllocator, &outs, &n));
    } catch (...) {
      api->ReleaseIoBinding(b);
      throw;
    }
    api->ReleaseIoBinding(b);
    Value held(n ? outs[0] : nullptr);
    if (outs) check(api->AllocatorFree(hostAllocator, outs));
    if (!held.v) throw OrtError{"the identity graph returned nothing"};
    return toHost(env, held.v);
  });
}

// stateNames(ctx) → [{ name, onDevice, bytes }]
napi_value StateNames(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 1);
    Context* c = unwrap(env, a[0]);
    napi_value out;
    NAPI_CALL(env, napi_create_array_with_length(env, c->state.size(), &out));
    uint32_t i = 0;
    for (auto& [k, v] : c->state) {
      napi_value o, name, dev, bytes;
      NAPI_CALL(env, napi_create_object(env, &o));
      NAPI_CALL(env, napi_create_string_utf8(env, k.c_str(), NAPI_AUTO_LENGTH, &name));
      NAPI_CALL(env, napi_get_boolean(env, v->onDevice, &dev));
      NAPI_CALL(env, napi_create_double(env, static_cast<double>(describe(v->v).bytes), &bytes));
      NAPI_CALL(env, napi_set_named_property(env, o, "name", name));
      NAPI_CALL(env, napi_set_named_property(env, o, "onDevice", dev));
      NAPI_CALL(env, napi_set_named_property(env, o, "bytes", bytes));
      NAPI_CALL(env, napi_set_element(env, out, i++, o));
    }
    return out;
  });
}

struct RunWork {
  Context* c;
  OrtSession* session;
  OrtIoBinding* binding = nullptr;
  std::vector<std::unique_ptr<Value>> feeds;       // host inputs, alive until the run is done
  std::vector<std::pair<bool, std::string>> outs;  // in binding order: (to state?, state name or output name)
  std::string error;
  napi_deferred deferred;
  napi_async_work work;
  napi_ref context;  // keeps the context's JavaScript handle (and so the context) alive during the run
};

void execute(napi_env, void* data) {
  auto* w = static_cast<RunWork*>(data);
  try {
    check(api->RunWithBinding(w->session, nullptr, w->binding));
  } catch (const OrtError& e) {
    w->error = e.message;
  }
}

void complete(napi_env env, napi_status, void* data) {
  std::unique_ptr<RunWork> w(static_cast<RunWork*>(data));
  Context* c = w->c;
  c->busy = false;
  napi_value result = nullptr;
  std::string error = w->error;
  if (error.empty()) {
    OrtValue** vals = nullptr;
    size_t n = 0;
    try {
      check(api->GetBoundOutputValues(w->binding, hostAllocator, &vals, &n));
      if (n != w->outs.size())
        throw OrtError{"the run returned " + std::to_string(n) + " outputs, " + std::to_string(w->outs.size()) +
                       " were bound"};
      NAPI_CALL(env, napi_create_object(env, &result));
      for (size_t i = 0; i < n; i++) {
        auto& [toState, name] = w->outs[i];
        if (toState) {
          c->state[name] = std::make_unique<Value>(vals[i], c->readBack);
          vals[i] = nullptr;
        } else {
          Value held(vals[i]);
          vals[i] = nullptr;
          NAPI_CALL(env, napi_set_named_property(env, result, name.c_str(), toHost(env, held.v)));
        }
      }
    } catch (const OrtError& e) {
      error = e.message;
    }
    for (size_t i = 0; vals && i < n; i++)
      if (vals[i]) api->ReleaseValue(vals[i]);
    if (vals) {
      OrtStatus* s = api->AllocatorFree(hostAllocator, vals);
      if (s) api->ReleaseStatus(s);
    }
  }
  api->ReleaseIoBinding(w->binding);
  w->feeds.clear();
  if (error.empty()) {
    napi_resolve_deferred(env, w->deferred, result);
  } else {
    napi_value msg, err;
    napi_create_string_utf8(env, error.c_str(), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, nullptr, msg, &err);
    napi_reject_deferred(env, w->deferred, err);
  }
  napi_delete_reference(env, w->context);
  napi_delete_async_work(env, w->work);
}

// run(ctx, session, feeds {input: tensor}, fromState {input: state name}, toState {output: state name}, toHost
// [output]) → Promise<{output: tensor}>. Outputs bound to the state replace those tensors once the run is done.
napi_value Run(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 6);
    Context* c = unwrap(env, a[0]);
    if (c->busy) throw OrtError{"a run is already in progress on this context"};
    uint32_t index = 0;
    NAPI_CALL(env, napi_get_value_uint32(env, a[1], &index));
    if (index >= c->sessions.size()) throw OrtError{"no session " + std::to_string(index)};
    auto w = std::make_unique<RunWork>();
    w->c = c;
    w->session = c->sessions[index]->session;
    check(api->CreateIoBinding(w->session, &w->binding));
    try {
      for (auto& k : keys(env, a[2])) {
        w->feeds.push_back(std::make_unique<Value>(fromHost(env, prop(env, a[2], k.c_str()), k)));
        check(api->BindInput(w->binding, k.c_str(), w->feeds.back()->v));
      }
      for (auto& k : keys(env, a[3])) {
        std::string name = str(env, prop(env, a[3], k.c_str()));
        auto it = c->state.find(name);
        if (it == c->state.end()) throw OrtError{"input \"" + k + "\": no state tensor \"" + name + "\""};
        check(api->BindInput(w->binding, k.c_str(), it->second->v));
      }
      for (auto& k : keys(env, a[4])) {
        check(api->BindOutputToDevice(w->binding, k.c_str(), c->device));
        w->outs.emplace_back(true, str(env, prop(env, a[4], k.c_str())));
      }
      uint32_t n = 0;
      NAPI_CALL(env, napi_get_array_length(env, a[5], &n));
      for (uint32_t i = 0; i < n; i++) {
        napi_value k;
        NAPI_CALL(env, napi_get_element(env, a[5], i, &k));
        std::string name = str(env, k);
        check(api->BindOutputToDevice(w->binding, name.c_str(), c->host));
        w->outs.emplace_back(false, name);
      }
    } catch (...) {
      api->ReleaseIoBinding(w->binding);
      throw;
    }
    napi_value promise, resource;
    NAPI_CALL(env, napi_create_promise(env, &w->deferred, &promise));
    NAPI_CALL(env, napi_create_string_utf8(env, "delta-studio.resident.run", NAPI_AUTO_LENGTH, &resource));
    NAPI_CALL(env, napi_create_reference(env, a[0], 1, &w->context));
    NAPI_CALL(env, napi_create_async_work(env, nullptr, resource, execute, complete, w.get(), &w->work));
    NAPI_CALL(env, napi_queue_async_work(env, w->work));
    c->busy = true;
    w.release();
    return promise;
  });
}

// release(ctx): frees the sessions and the state now (else the garbage collector does, some time).
napi_value Release(napi_env env, napi_callback_info info) {
  return guarded(env, [&]() -> napi_value {
    auto a = args(env, info, 1);
    void* p = nullptr;
    NAPI_CALL(env, napi_get_value_external(env, a[0], &p));
    auto* c = static_cast<Context*>(p);
    if (c && c->busy) throw OrtError{"a run is in progress"};
    if (c) {
      c->state.clear();
      c->sessions.clear();
    }
    return nullptr;
  });
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor fns[] = {
      {"load", nullptr, Load, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"createContext", nullptr, CreateContext, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"addSession", nullptr, AddSession, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setState", nullptr, SetState, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"getState", nullptr, GetState, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"deleteState", nullptr, DeleteState, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"stateNames", nullptr, StateNames, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"run", nullptr, Run, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"release", nullptr, Release, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(fns) / sizeof(fns[0]), fns);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
