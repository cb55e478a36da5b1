// The part of onnxruntime's C API the resident-state addon calls, declared here so that the addon builds without
// onnxruntime's headers. onnxruntime's OrtApi is a table of function pointers that only ever grows at its end (a
// table handed out for version N keeps every slot of N), so a function is found by its slot number. The numbers are
// those of ORT_API_VERSION 13 (onnxruntime 1.13), checked against the table onnxruntime's onnxruntime_c_api.cc fills;
// GetApi(13) of onnxruntime 1.29 returns a table with all of them.
#pragma once
#include <cstddef>
#include <cstdint>

#define ORT_API_VERSION_USED 13

struct OrtEnv;
struct OrtStatus;
struct OrtMemoryInfo;
struct OrtIoBinding;
struct OrtSession;
struct OrtValue;
struct OrtRunOptions;
struct OrtTensorTypeAndShapeInfo;
struct OrtSessionOptions;
struct OrtCUDAProviderOptionsV2;
struct OrtAllocator;

enum ONNXTensorElementDataType {
  ONNX_UNDEFINED = 0,
  ONNX_FLOAT = 1,
  ONNX_UINT8 = 2,
  ONNX_INT8 = 3,
  ONNX_UINT16 = 4,
  ONNX_INT16 = 5,
  ONNX_INT32 = 6,
  ONNX_INT64 = 7,
  ONNX_STRING = 8,
  ONNX_BOOL = 9,
  ONNX_FLOAT16 = 10,
  ONNX_DOUBLE = 11,
  ONNX_UINT32 = 12,
  ONNX_UINT64 = 13,
  ONNX_BFLOAT16 = 16,
};
enum OrtLoggingLevel { ORT_LOGGING_LEVEL_WARNING = 2, ORT_LOGGING_LEVEL_ERROR = 3 };
enum OrtAllocatorType { OrtDeviceAllocator = 0, OrtArenaAllocator = 1 };
enum OrtMemType { OrtMemTypeDefault = 0 };
enum GraphOptimizationLevel { ORT_DISABLE_ALL = 0, ORT_ENABLE_BASIC = 1, ORT_ENABLE_EXTENDED = 2, ORT_ENABLE_ALL = 99 };

struct OrtApiBase {
  const void* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

// The table, read by slot. Each method is the C API function of the same name.
class OrtApi {
  template <typename F>
  F at(int slot) const {
    return reinterpret_cast<F>(reinterpret_cast<void* const*>(this)[slot]);
  }
  using S = OrtStatus*;

 public:
  const char* GetErrorMessage(const OrtStatus* s) const { return at<const char* (*)(const OrtStatus*)>(2)(s); }
  S CreateEnv(OrtLoggingLevel l, const char* id, OrtEnv** out) const {
    return at<S (*)(OrtLoggingLevel, const char*, OrtEnv**)>(3)(l, id, out);
  }
  S CreateSessionFromArray(const OrtEnv* e, const void* d, size_t n, const OrtSessionOptions* o, OrtSession** out) const {
    return at<S (*)(const OrtEnv*, const void*, size_t, const OrtSessionOptions*, OrtSession**)>(8)(e, d, n, o, out);
  }
  S CreateSessionOptions(OrtSessionOptions** out) const { return at<S (*)(OrtSessionOptions**)>(10)(out); }
  S EnableProfiling(OrtSessionOptions* o, const char* prefix) const {
    return at<S (*)(OrtSessionOptions*, const char*)>(14)(o, prefix);
  }
  S EnableMemPattern(OrtSessionOptions* o) const { return at<S (*)(OrtSessionOptions*)>(16)(o); }
  S DisableMemPattern(OrtSessionOptions* o) const { return at<S (*)(OrtSessionOptions*)>(17)(o); }
  S SetSessionGraphOptimizationLevel(OrtSessionOptions* o, GraphOptimizationLevel l) const {
    return at<S (*)(OrtSessionOptions*, GraphOptimizationLevel)>(23)(o, l);
  }
  S SetIntraOpNumThreads(OrtSessionOptions* o, int n) const { return at<S (*)(OrtSessionOptions*, int)>(24)(o, n); }
  S CreateTensorAsOrtValue(OrtAllocator* a, const int64_t* shape, size_t rank, ONNXTensorElementDataType t,
                           OrtValue** out) const {
    return at<S (*)(OrtAllocator*, const int64_t*, size_t, ONNXTensorElementDataType, OrtValue**)>(48)(a, shape, rank,
                                                                                                      t, out);
  }
  S GetTensorMutableData(OrtValue* v, void** out) const { return at<S (*)(OrtValue*, void**)>(51)(v, out); }
  S GetTensorElementType(const OrtTensorTypeAndShapeInfo* i, ONNXTensorElementDataType* out) const {
    return at<S (*)(const OrtTensorTypeAndShapeInfo*, ONNXTensorElementDataType*)>(60)(i, out);
  }
  S GetDimensionsCount(const OrtTensorTypeAndShapeInfo* i, size_t* out) const {
    return at<S (*)(const OrtTensorTypeAndShapeInfo*, size_t*)>(61)(i, out);
  }
  S GetDimensions(const OrtTensorTypeAndShapeInfo* i, int64_t* dims, size_t n) const {
    return at<S (*)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t)>(62)(i, dims, n);
  }
  S GetTensorShapeElementCount(const OrtTensorTypeAndShapeInfo* i, size_t* out) const {
    return at<S (*)(const OrtTensorTypeAndShapeInfo*, size_t*)>(64)(i, out);
  }
  S GetTensorTypeAndShape(const OrtValue* v, OrtTensorTypeAndShapeInfo** out) const {
    return at<S (*)(const OrtValue*, OrtTensorTypeAndShapeInfo**)>(65)(v, out);
  }
  S CreateMemoryInfo(const char* name, OrtAllocatorType t, int id, OrtMemType m, OrtMemoryInfo** out) const {
    return at<S (*)(const char*, OrtAllocatorType, int, OrtMemType, OrtMemoryInfo**)>(68)(name, t, id, m, out);
  }
  S CreateCpuMemoryInfo(OrtAllocatorType t, OrtMemType m, OrtMemoryInfo** out) const {
    return at<S (*)(OrtAllocatorType, OrtMemType, OrtMemoryInfo**)>(69)(t, m, out);
  }
  S AllocatorFree(OrtAllocator* a, void* p) const { return at<S (*)(OrtAllocator*, void*)>(76)(a, p); }
  S GetAllocatorWithDefaultOptions(OrtAllocator** out) const { return at<S (*)(OrtAllocator**)>(78)(out); }
  void ReleaseEnv(OrtEnv* x) const { at<void (*)(OrtEnv*)>(92)(x); }
  void ReleaseStatus(OrtStatus* x) const { at<void (*)(OrtStatus*)>(93)(x); }
  void ReleaseMemoryInfo(OrtMemoryInfo* x) const { at<void (*)(OrtMemoryInfo*)>(94)(x); }
  void ReleaseSession(OrtSession* x) const { at<void (*)(OrtSession*)>(95)(x); }
  void ReleaseValue(OrtValue* x) const { at<void (*)(OrtValue*)>(96)(x); }
  void ReleaseTensorTypeAndShapeInfo(OrtTensorTypeAndShapeInfo* x) const {
    at<void (*)(OrtTensorTypeAndShapeInfo*)>(99)(x);
  }
  void ReleaseSessionOptions(OrtSessionOptions* x) const { at<void (*)(OrtSessionOptions*)>(100)(x); }
  S AddSessionConfigEntry(OrtSessionOptions* o, const char* k, const char* v) const {
    return at<S (*)(OrtSessionOptions*, const char*, const char*)>(130)(o, k, v);
  }
  S RunWithBinding(OrtSession* s, const OrtRunOptions* r, const OrtIoBinding* b) const {
    return at<S (*)(OrtSession*, const OrtRunOptions*, const OrtIoBinding*)>(133)(s, r, b);
  }
  S CreateIoBinding(OrtSession* s, OrtIoBinding** out) const {
    return at<S (*)(OrtSession*, OrtIoBinding**)>(134)(s, out);
  }
  void ReleaseIoBinding(OrtIoBinding* x) const { at<void (*)(OrtIoBinding*)>(135)(x); }
  S BindInput(OrtIoBinding* b, const char* name, const OrtValue* v) const {
    return at<S (*)(OrtIoBinding*, const char*, const OrtValue*)>(136)(b, name, v);
  }
  S BindOutputToDevice(OrtIoBinding* b, const char* name, const OrtMemoryInfo* m) const {
    return at<S (*)(OrtIoBinding*, const char*, const OrtMemoryInfo*)>(138)(b, name, m);
  }
  S GetBoundOutputValues(const OrtIoBinding* b, OrtAllocator* a, OrtValue*** out, size_t* n) const {
    return at<S (*)(const OrtIoBinding*, OrtAllocator*, OrtValue***, size_t*)>(140)(b, a, out, n);
  }
  S SessionOptionsAppendExecutionProvider_CUDA_V2(OrtSessionOptions* o, const OrtCUDAProviderOptionsV2* c) const {
    return at<S (*)(OrtSessionOptions*, const OrtCUDAProviderOptionsV2*)>(204)(o, c);
  }
  S CreateCUDAProviderOptions(OrtCUDAProviderOptionsV2** out) const {
    return at<S (*)(OrtCUDAProviderOptionsV2**)>(205)(out);
  }
  S UpdateCUDAProviderOptions(OrtCUDAProviderOptionsV2* c, const char* const* k, const char* const* v, size_t n) const {
    return at<S (*)(OrtCUDAProviderOptionsV2*, const char* const*, const char* const*, size_t)>(206)(c, k, v, n);
  }
  void ReleaseCUDAProviderOptions(OrtCUDAProviderOptionsV2* x) const { at<void (*)(OrtCUDAProviderOptionsV2*)>(208)(x); }
};
