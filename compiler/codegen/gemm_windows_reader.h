#pragma once
// Internal to codegen: IR that reads an image through convolution windows
// (lower::GemmWindows), shared by the window packers
// (gemm_pack_windows.cpp) and the micro-kernel that reads A's rows straight
// from the image (gemm_direct_windows.cpp).
#include <llvm/IR/IRBuilder.h>

#include "compiler/lower/loop_ir.h"

namespace kiln::codegen {

using llvm::Value;

// The depths read from one pointer into the image: a tap's cg channels or,
// with one group, no horizontal dilation and few channels, a window row's kw
// taps, kw * cg floats one after another (a 3-channel 7x7 stem: 7 runs of
// 21, not 49 of 3). Run i starts at depth i * window_run(w).
inline bool row_runs(const lower::GemmWindows& w) { return w.dw == 1 && w.cg == w.channels && w.kw > 1 && w.cg < 8; }
inline int64_t window_run(const lower::GemmWindows& w) { return row_runs(w) ? w.kw * w.cg : w.cg; }

// IR for reading an image through the windows of w.
struct WindowReader {
  llvm::IRBuilder<>& b;
  const lower::GemmWindows& w;
  bool index32;  // every element offset fits 32 bits

  Value* c64(int64_t v) const { return b.getInt64(static_cast<uint64_t>(v)); }
  // A scalar constant, or splat over `lanes` lanes (0: scalar).
  Value* cst(int64_t v, unsigned lanes) const { return lanes ? b.CreateVectorSplat(lanes, c64(v)) : c64(v); }
  // Output position p (scalar, or a vector of `lanes`) -> the top-left corner
  // (ih0, iw0) of its window and that corner's element offset in the image
  // (outside the image when it lies in the padding).
  struct Corner {
    Value *ih0, *iw0, *at;
  };
  Corner corner(Value* p, unsigned lanes) const {
    auto k = [&](int64_t v) { return cst(v, lanes); };
    Value *x = b.CreateURem(p, k(w.ow)), *rest = b.CreateUDiv(p, k(w.ow));
    Value *y = b.CreateURem(rest, k(w.oh)), *image = b.CreateUDiv(rest, k(w.oh));
    Value* ih0 = b.CreateSub(b.CreateMul(y, k(w.sh)), k(w.pad_top));
    Value* iw0 = b.CreateSub(b.CreateMul(x, k(w.sw)), k(w.pad_left));
    Value* at = b.CreateMul(b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(image, k(w.h)), ih0), k(w.w)), iw0),
                            k(w.channels));
    return Corner{ih0, iw0, at};
  }
  // Window column j (scalar or vector) = (tap, channel) -> the tap's row and
  // column offsets (dy, dx) and its element offset from the corner.
  struct Tap {
    Value *dy, *dx, *off;
  };
  Tap tap(Value* j, unsigned lanes) const {
    auto k = [&](int64_t v) { return cst(v, lanes); };
    Value *ch = b.CreateURem(j, k(w.cg)), *t = b.CreateUDiv(j, k(w.cg));
    Value* dy = b.CreateMul(b.CreateUDiv(t, k(w.kw)), k(w.dh));
    Value* dx = b.CreateMul(b.CreateURem(t, k(w.kw)), k(w.dw));
    return Tap{dy, dx, b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(dy, k(w.w)), dx), k(w.channels)), ch)};
  }
  // Inside the image: 0 <= ih < h and 0 <= iw < w, as unsigned compares.
  Value* inside(Value* ih, Value* iw, unsigned lanes) const {
    return b.CreateAnd(b.CreateICmpULT(ih, cst(w.h, lanes)), b.CreateICmpULT(iw, cst(w.w, lanes)));
  }
  // Floats at base + off[r] for the lanes under mask, zero elsewhere. With
  // 32-bit offsets, one gather instruction covers 8 or 16 lanes, not 4 or 8.
  Value* gather(Value* base, Value* off, Value* mask, unsigned lanes) const {
    auto* vf = llvm::FixedVectorType::get(b.getFloatTy(), lanes);
    if (index32) off = b.CreateTrunc(off, llvm::FixedVectorType::get(b.getInt32Ty(), lanes));
    Value* ptrs = b.CreateGEP(b.getFloatTy(), base, off);  // (masked-off lanes may point anywhere: never read)
    return b.CreateMaskedGather(vf, ptrs, llvm::Align(4), mask, llvm::Constant::getNullValue(vf));
  }
};

}  // namespace kiln::codegen
