// oneDNN's CPU convolutions as XLA FFI handlers: forward, input gradient and filter gradient
// of a 2-D convolution with NHWC activations and HWIO filters in float32, one group.
//
// Each handler takes the geometry as attributes (strides, padding, dilation) and the shapes
// from its buffers. oneDNN picks its fastest implementation for that geometry, which may want
// the filters in a blocked layout: they are reordered from (or, for the filter gradient, to)
// HWIO around the primitive. Primitives are built once per geometry and cached.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum class Direction { kForward, kInputGradient, kFilterGradient };

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Geometry {
  int64_t batch, in_h, in_w, in_c, kernel_h, kernel_w, out_c, out_h, out_w;
  int64_t stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h, dilation_w;

  std::string Key(Direction direction) const {
    std::string key = std::to_string(static_cast<int>(direction));
    for (int64_t v : {batch, in_h, in_w, in_c, kernel_h, kernel_w, out_c, out_h, out_w, stride_h,
                      stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h, dilation_w}) {
      key += ',' + std::to_string(v);
    }
    return key;
  }
  memory::desc Input() const {
    return {{batch, in_c, in_h, in_w}, memory::data_type::f32, memory::format_tag::nhwc};
  }
  memory::desc Output() const {
    return {{batch, out_c, out_h, out_w}, memory::data_type::f32, memory::format_tag::nhwc};
  }
  memory::desc Filters() const {  // HWIO, described as (O, I, H, W) with HWIO's strides
    return {{out_c, in_c, kernel_h, kernel_w}, memory::data_type::f32,
            memory::dims{1, out_c, kernel_w * in_c * out_c, in_c * out_c}};
  }
  memory::desc AnyFilters() const {
    return {{out_c, in_c, kernel_h, kernel_w}, memory::data_type::f32, memory::format_tag::any};
  }
  memory::dims Strides() const { return {stride_h, stride_w}; }
  memory::dims Dilation() const { return {dilation_h - 1, dilation_w - 1}; }  // oneDNN counts gaps
  memory::dims PaddingBefore() const { return {pad_top, pad_left}; }
  memory::dims PaddingAfter() const { return {pad_bottom, pad_right}; }

  dnnl::convolution_forward::primitive_desc ForwardDesc() const {
    return {Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
            Input(), AnyFilters(), Output(), Strides(), Dilation(), PaddingBefore(),
            PaddingAfter()};
  }
};

struct Primitive {
  dnnl::primitive convolution;
  memory::desc filters;  // the layout the convolution reads or writes its filters in
  std::unique_ptr<dnnl::reorder> to_filters;  // HWIO <-> `filters`, where they differ
};

Primitive Build(const Geometry& g, Direction direction) {
  Primitive p;
  auto forward = g.ForwardDesc();
  if (direction == Direction::kForward) {
    p.convolution = dnnl::convolution_forward(forward);
    p.filters = forward.weights_desc();
  } else if (direction == Direction::kInputGradient) {
    dnnl::convolution_backward_data::primitive_desc desc(
        Engine(), dnnl::algorithm::convolution_direct, g.Input(), g.AnyFilters(), g.Output(),
        g.Strides(), g.Dilation(), g.PaddingBefore(), g.PaddingAfter(), forward);
    p.convolution = dnnl::convolution_backward_data(desc);
    p.filters = desc.weights_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc desc(
        Engine(), dnnl::algorithm::convolution_direct, g.Input(), g.AnyFilters(), g.Output(),
        g.Strides(), g.Dilation(), g.PaddingBefore(), g.PaddingAfter(), forward);
    p.convolution = dnnl::convolution_backward_weights(desc);
    p.filters = desc.diff_weights_desc();
  }
  if (p.filters != g.Filters()) {
    bool produced = direction == Direction::kFilterGradient;
    p.to_filters = std::make_unique<dnnl::reorder>(dnnl::reorder::primitive_desc(
        Engine(), produced ? p.filters : g.Filters(), Engine(), produced ? g.Filters() : p.filters));
  }
  return p;
}

const Primitive& Cached(const Geometry& g, Direction direction) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::unique_ptr<Primitive>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[g.Key(direction)];
  if (!entry) entry = std::make_unique<Primitive>(Build(g, direction));
  return *entry;
}

Geometry Describe(ffi::Span<const int64_t> input, ffi::Span<const int64_t> filters,
                  ffi::Span<const int64_t> output, int64_t stride_h, int64_t stride_w,
                  int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                  int64_t dilation_h, int64_t dilation_w) {
  return {input[0],  input[1],   input[2],   input[3], filters[0], filters[1],
          filters[3], output[1], output[2],  stride_h, stride_w,   pad_top,
          pad_bottom, pad_left,  pad_right,  dilation_h, dilation_w};
}

// Runs the convolution of `direction` on `activations` (input or output gradient, as the
// direction reads them) and HWIO `filters`, writing `result`.
ffi::Error Run(const Geometry& g, Direction direction,
               std::unordered_map<int, memory> arguments, int filters_argument,
               void* filters_data) {
  try {
    const Primitive& p = Cached(g, direction);
    // One convolution at a time: each spreads over every core with OpenMP, and XLA may call
    // two at once from its own threads; two OpenMP teams then share the cores, and oneDNN's
    // spin barriers inside a team wait for threads that the other team holds.
    static std::mutex one_at_a_time;
    std::lock_guard<std::mutex> lock(one_at_a_time);
    dnnl::stream stream(Engine());
    memory hwio(g.Filters(), Engine(), filters_data);
    memory used = p.to_filters ? memory(p.filters, Engine()) : hwio;
    if (p.to_filters && direction != Direction::kFilterGradient) {
      p.to_filters->execute(stream, hwio, used);
    }
    arguments[filters_argument] = used;
    p.convolution.execute(stream, arguments);
    if (p.to_filters && direction == Direction::kFilterGradient) {
      p.to_filters->execute(stream, used, hwio);
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::Buffer<ffi::F32> input, ffi::Buffer<ffi::F32> filters,
                   ffi::ResultBuffer<ffi::F32> output, int64_t stride_h, int64_t stride_w,
                   int64_t pad_top, int64_t pad_bottom, int64_t pad_left, int64_t pad_right,
                   int64_t dilation_h, int64_t dilation_w) {
  Geometry g = Describe(input.dimensions(), filters.dimensions(), output->dimensions(), stride_h,
                        stride_w, pad_top, pad_bottom, pad_left, pad_right, dilation_h,
                        dilation_w);
  return Run(g, Direction::kForward,
             {{DNNL_ARG_SRC, memory(g.Input(), Engine(), input.typed_data())},
              {DNNL_ARG_DST, memory(g.Output(), Engine(), output->typed_data())}},
             DNNL_ARG_WEIGHTS, filters.typed_data());
}

ffi::Error InputGradient(ffi::Buffer<ffi::F32> output_gradient, ffi::Buffer<ffi::F32> filters,
                         ffi::ResultBuffer<ffi::F32> input_gradient, int64_t stride_h,
                         int64_t stride_w, int64_t pad_top, int64_t pad_bottom, int64_t pad_left,
                         int64_t pad_right, int64_t dilation_h, int64_t dilation_w) {
  Geometry g = Describe(input_gradient->dimensions(), filters.dimensions(),
                        output_gradient.dimensions(), stride_h, stride_w, pad_top, pad_bottom,
                        pad_left, pad_right, dilation_h, dilation_w);
  return Run(g, Direction::kInputGradient,
             {{DNNL_ARG_DIFF_DST, memory(g.Output(), Engine(), output_gradient.typed_data())},
              {DNNL_ARG_DIFF_SRC, memory(g.Input(), Engine(), input_gradient->typed_data())}},
             DNNL_ARG_WEIGHTS, filters.typed_data());
}

ffi::Error FilterGradient(ffi::Buffer<ffi::F32> input, ffi::Buffer<ffi::F32> output_gradient,
                          ffi::ResultBuffer<ffi::F32> filter_gradient, int64_t stride_h,
                          int64_t stride_w, int64_t pad_top, int64_t pad_bottom,
                          int64_t pad_left, int64_t pad_right, int64_t dilation_h,
                          int64_t dilation_w) {
  Geometry g = Describe(input.dimensions(), filter_gradient->dimensions(),
                        output_gradient.dimensions(), stride_h, stride_w, pad_top, pad_bottom,
                        pad_left, pad_right, dilation_h, dilation_w);
  return Run(g, Direction::kFilterGradient,
             {{DNNL_ARG_SRC, memory(g.Input(), Engine(), input.typed_data())},
              {DNNL_ARG_DIFF_DST, memory(g.Output(), Engine(), output_gradient.typed_data())}},
             DNNL_ARG_DIFF_WEIGHTS, filter_gradient->typed_data());
}

}  // namespace

#define JAXCNN_CONV_HANDLER(name, function)                                                   \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(                                                               \
      name, function,                                                                          \
      ffi::Ffi::Bind()                                                                         \
          .Arg<ffi::Buffer<ffi::F32>>()                                                        \
          .Arg<ffi::Buffer<ffi::F32>>()                                                        \
          .Ret<ffi::Buffer<ffi::F32>>()                                                        \
          .Attr<int64_t>("stride_h")                                                           \
          .Attr<int64_t>("stride_w")                                                           \
          .Attr<int64_t>("pad_top")                                                            \
          .Attr<int64_t>("pad_bottom")                                                         \
          .Attr<int64_t>("pad_left")                                                           \
          .Attr<int64_t>("pad_right")                                                          \
          .Attr<int64_t>("dilation_h")                                                         \
          .Attr<int64_t>("dilation_w"));

JAXCNN_CONV_HANDLER(JaxcnnConvForward, Forward)
JAXCNN_CONV_HANDLER(JaxcnnConvInputGradient, InputGradient)
JAXCNN_CONV_HANDLER(JaxcnnConvFilterGradient, FilterGradient)
