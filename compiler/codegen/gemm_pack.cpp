// Packing for the GEMM micro-kernel: op(A) into MR-row panels (k-major: the
// MR values of one k are adjacent, broadcast one by one), op(B) into NR-column
// panels (k-major: one k's NR values are the vectors the kernel loads).
// Panels are zero padded past the matrix edge, so edge tiles compute with
// zeros and the kernel stores only their valid corner.
#include "compiler/codegen/gemm_ir.h"

namespace kiln::codegen {

using llvm::Value;

namespace {

struct PackFn {
  llvm::Function* f = nullptr;
  Value *src = nullptr, *ld = nullptr, *r0 = nullptr, *n = nullptr, *k0 = nullptr, *kc = nullptr, *dst = nullptr;
};

// void name(ptr src, i64 ld, i64 r0, i64 n, i64 k0, i64 kc, ptr dst); f
// nullptr when its body is not to be built here (it exists already, or is Imported).
PackFn begin_pack(llvm::Module& m, llvm::IRBuilder<>& b, const std::string& name, const GemmHelperOptions& o) {
  PackFn p;
  llvm::Type *i64 = b.getInt64Ty(), *ptr = b.getPtrTy();
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, i64, i64, i64, i64, i64, ptr}, false);
  p.f = create_gemm_helper(m, name, fty, o);
  if (!p.f || o.placement == HelperPlacement::Imported) return PackFn{};
  p.f->addParamAttr(0, llvm::Attribute::NoAlias);
  p.f->addParamAttr(6, llvm::Attribute::NoAlias);
  p.src = p.f->getArg(0), p.ld = p.f->getArg(1), p.r0 = p.f->getArg(2), p.n = p.f->getArg(3);
  p.k0 = p.f->getArg(4), p.kc = p.f->getArg(5), p.dst = p.f->getArg(6);
  b.SetInsertPoint(llvm::BasicBlock::Create(m.getContext(), "entry", p.f));
  return p;
}

// Element (row r0 + i, depth k0 + k) of the source: src[row*ld + depth], or
// src[depth*ld + row] when `trans`. Rows at or past n read row n-1 (in bounds)
// and yield zero.
Value* load_clamped(llvm::IRBuilder<>& b, const PackFn& p, bool trans, Value* i, Value* k) {
  auto* f32 = b.getFloatTy();
  Value* last = b.CreateSub(p.n, b.getInt64(1));
  Value* inside = b.CreateICmpSLT(i, p.n);
  Value* row = b.CreateAdd(p.r0, b.CreateSelect(inside, i, last));
  Value* depth = b.CreateAdd(p.k0, k);
  Value* at = trans ? b.CreateAdd(b.CreateMul(depth, p.ld), row) : b.CreateAdd(b.CreateMul(row, p.ld), depth);
  Value* x = b.CreateAlignedLoad(f32, b.CreateInBoundsGEP(f32, p.src, at), llvm::Align(4));
  return b.CreateSelect(inside, x, llvm::ConstantFP::get(f32, 0.0));
}

}  // namespace

std::vector<Value*> transpose_lanes(llvm::IRBuilder<>& b, std::vector<Value*> v) {
  const int L = static_cast<int>(v.size());
  std::vector<int> lo, hi;
  for (int i = 0; i < L / 2; ++i) {
    lo.insert(lo.end(), {i, i + L});
    hi.insert(hi.end(), {i + L / 2, i + L / 2 + L});
  }
  for (int round = 1; round < L; round *= 2) {
    std::vector<Value*> next(static_cast<size_t>(L));
    for (int i = 0; i < L / 2; ++i) {
      next[2 * i] = b.CreateShuffleVector(v[i], v[i + L / 2], lo);
      next[2 * i + 1] = b.CreateShuffleVector(v[i], v[i + L / 2], hi);
    }
    v = next;
  }
  return v;
}

namespace {

// A vector of lanes floats from src; with `count` (< lanes) only the first
// count are read (a masked load: the rest may lie past the matrix) and the
// others are zero.
Value* load_lanes(llvm::IRBuilder<>& b, llvm::FixedVectorType* vec, Value* src, Value* count) {
  if (!count) return b.CreateAlignedLoad(vec, src, llvm::Align(4));
  const unsigned L = vec->getNumElements();
  Value* mask = b.CreateICmpSLT(lane_indices(b, L), b.CreateVectorSplat(L, count));
  return b.CreateMaskedLoad(vec, src, llvm::Align(4), mask, llvm::Constant::getNullValue(vec));
}

// Stores transposed vector t at at(t), for every t (count null) or for t < count.
void store_rows(llvm::IRBuilder<>& b, const std::vector<Value*>& v, Value* count,
                const std::function<Value*(uint64_t)>& at) {
  for (uint64_t t = 0; t < v.size(); ++t) {
    if (!count) {
      b.CreateAlignedStore(v[t], at(t), llvm::Align(4));
      continue;
    }
    gemm_if(b, b.CreateICmpULT(b.getInt64(t), count), [&] { b.CreateAlignedStore(v[t], at(t), llvm::Align(4)); });
  }
}

}  // namespace

llvm::Function* gemm_pack_a(llvm::Module& m, const GemmShape& s, bool trans, const GemmHelperOptions& o) {
  std::string name = std::string("kiln_gemm_pack_a") + (trans ? "_t" : "") + "_" + std::to_string(s.mr);
  llvm::IRBuilder<> b(m.getContext());
  PackFn p = begin_pack(m, b, name, o);
  if (!p.f) return m.getFunction(name);
  auto* f32 = b.getFloatTy();
  const uint64_t mr = static_cast<uint64_t>(s.mr);
  // Rows of op(A) are p.r0.., depth k0..; dst[panel*MR*kc + k*MR + r].
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(s.lanes));
  const uint64_t L = static_cast<uint64_t>(s.lanes);
  gemm_for(b, b.getInt64(0), p.n, s.mr, "i", [&](Value* i) {
    Value* panel = b.CreateInBoundsGEP(f32, p.dst, b.CreateMul(i, p.kc));
    auto scalar_panel = [&](Value* k_lo) {
      gemm_for(b, k_lo, p.kc, 1, "k", [&](Value* k) {
        Value* out = b.CreateInBoundsGEP(f32, panel, b.CreateMul(k, b.getInt64(mr)));
        for (uint64_t r = 0; r < mr; ++r) {
          Value* x = load_clamped(b, p, trans, b.CreateAdd(i, b.getInt64(r)), k);
          b.CreateAlignedStore(x, b.CreateConstInBoundsGEP1_64(f32, out, r), llvm::Align(4));
        }
      });
    };
    if (trans) {
      // op(A) = A^T: a panel's MR rows at one depth are MR neighbours in a
      // row of A: one MR-wide load and store per depth for a whole panel.
      auto* row_vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(mr));
      // A last, partial panel loads under a mask: rows past n read as 0.
      Value* whole = b.CreateICmpSLE(b.CreateAdd(i, b.getInt64(mr)), p.n);
      Value* rows_left = b.CreateVectorSplat(static_cast<unsigned>(mr), b.CreateSub(p.n, i));
      Value* mask = b.CreateICmpSLT(lane_indices(b, static_cast<unsigned>(mr)), rows_left);
      auto copy = [&](bool masked) {
        gemm_for(b, b.getInt64(0), p.kc, 1, "kt", [&](Value* k) {
          Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(p.k0, k), p.ld), b.CreateAdd(p.r0, i));
          Value* src = b.CreateInBoundsGEP(f32, p.src, at);
          Value* x = masked ? static_cast<Value*>(b.CreateMaskedLoad(row_vec, src, llvm::Align(4), mask,
                                                                      llvm::Constant::getNullValue(row_vec)))
                            : b.CreateAlignedLoad(row_vec, src, llvm::Align(4));
          b.CreateAlignedStore(x, b.CreateInBoundsGEP(f32, panel, b.CreateMul(k, b.getInt64(mr))), llvm::Align(4));
        });
      };
      gemm_if(b, whole, [&] { copy(false); }, [&] { copy(true); });
      return;
    }
    if (L < mr) {
      scalar_panel(b.getInt64(0));
      return;
    }
    // Row-major A, whole panel: lanes depths of the MR rows at a time (the
    // rows padded to a square with copies of the last), transposed in
    // registers, stored as full vectors at MR-float steps (each store's tail
    // is overwritten by the next; the last spills into the next panel or the
    // slot's padding).
    Value* whole = b.CreateICmpSLE(b.CreateAdd(i, b.getInt64(mr)), p.n);
    gemm_if(b, whole, [&] {
      // `depths` (lanes, or the tail's fewer under a mask) depths from k.
      auto block = [&](Value* k, Value* depths) {
        Value* depth = b.CreateAdd(p.k0, k);
        std::vector<Value*> v;
        for (uint64_t r = 0; r < L; ++r) {
          if (r >= mr) {
            v.push_back(v.back());
            continue;
          }
          Value* row = b.CreateAdd(p.r0, b.CreateAdd(i, b.getInt64(r)));
          Value* src = b.CreateInBoundsGEP(f32, p.src, b.CreateAdd(b.CreateMul(row, p.ld), depth));
          v.push_back(load_lanes(b, vec, src, depths));
        }
        v = transpose_lanes(b, v);
        store_rows(b, v, depths, [&](uint64_t t) {
          return b.CreateInBoundsGEP(f32, panel, b.CreateMul(b.CreateAdd(k, b.getInt64(t)), b.getInt64(mr)));
        });
      };
      Value* k_vec = b.CreateSub(p.kc, b.CreateSRem(p.kc, b.getInt64(L)));
      gemm_for(b, b.getInt64(0), k_vec, s.lanes, "kv", [&](Value* k) { block(k, nullptr); });
      // The depth tail (K = 9, 27, 75: small convolutions) as one masked block.
      gemm_if(b, b.CreateICmpSLT(k_vec, p.kc), [&] { block(k_vec, b.CreateSub(p.kc, k_vec)); });
    }, [&] { scalar_panel(b.getInt64(0)); });
  });
  b.CreateRetVoid();
  return p.f;
}

llvm::Function* gemm_pack_b(llvm::Module& m, const GemmShape& s, bool trans, const GemmHelperOptions& o) {
  std::string name = std::string("kiln_gemm_pack_b") + (trans ? "_t" : "") + "_" + std::to_string(s.nr());
  llvm::IRBuilder<> b(m.getContext());
  PackFn p = begin_pack(m, b, name, o);
  if (!p.f) return m.getFunction(name);
  auto* f32 = b.getFloatTy();
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(s.lanes));
  const uint64_t nr = static_cast<uint64_t>(s.nr());
  // Columns of op(B) are the "rows" r0.. of the source when `trans` (B^T), else
  // columns of B[depth*ld + col]; dst[panel*NR*kc + k*NR + c].
  gemm_for(b, b.getInt64(0), p.n, s.nr(), "j", [&](Value* j) {
    Value* panel = b.CreateInBoundsGEP(f32, p.dst, b.CreateMul(j, p.kc));
    Value* whole = b.CreateICmpSLE(b.CreateAdd(j, b.getInt64(nr)), p.n);
    // Columns [0, NR) of the panel for depths [k_lo, kc), one element at a time.
    auto scalar_panel = [&](Value* k_lo) {
      gemm_for(b, k_lo, p.kc, 1, "k", [&](Value* k) {
        Value* out = b.CreateInBoundsGEP(f32, panel, b.CreateMul(k, b.getInt64(nr)));
        for (uint64_t cc = 0; cc < nr; ++cc) {
          Value* x = load_clamped(b, p, !trans, b.CreateAdd(j, b.getInt64(cc)), k);
          b.CreateAlignedStore(x, b.CreateConstInBoundsGEP1_64(f32, out, cc), llvm::Align(4));
        }
      });
    };
    if (trans) {
      // B^T: column c of the panel is row r0+j+c of the source. Whole panels
      // move lanes x lanes blocks at a time (lanes row loads, a transpose in
      // registers, lanes stores); the depth tail goes element by element.
      gemm_if(b, whole, [&] {
        const uint64_t L = static_cast<uint64_t>(s.lanes);
        auto block = [&](Value* k, Value* depths) {
          Value* depth = b.CreateAdd(p.k0, k);
          for (int h = 0; h < s.nr_vecs; ++h) {
            std::vector<Value*> v;
            for (uint64_t i = 0; i < L; ++i) {
              Value* row = b.CreateAdd(p.r0, b.CreateAdd(j, b.getInt64(static_cast<uint64_t>(h) * L + i)));
              Value* src = b.CreateInBoundsGEP(f32, p.src, b.CreateAdd(b.CreateMul(row, p.ld), depth));
              v.push_back(load_lanes(b, vec, src, depths));
            }
            v = transpose_lanes(b, v);
            store_rows(b, v, depths, [&](uint64_t t) {
              Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(k, b.getInt64(t)), b.getInt64(nr)),
                                      b.getInt64(static_cast<uint64_t>(h) * L));
              return b.CreateInBoundsGEP(f32, panel, at);
            });
          }
        };
        Value* k_vec = b.CreateSub(p.kc, b.CreateSRem(p.kc, b.getInt64(L)));
        gemm_for(b, b.getInt64(0), k_vec, s.lanes, "kv", [&](Value* k) { block(k, nullptr); });
        gemm_if(b, b.CreateICmpSLT(k_vec, p.kc), [&] { block(k_vec, b.CreateSub(p.kc, k_vec)); });
      }, [&] { scalar_panel(b.getInt64(0)); });
      return;
    }
    // Untransposed: only the partial last panel here, element by element
    // (the whole panels are copied below, row by row).
    gemm_if(b, whole, {}, [&] { scalar_panel(b.getInt64(0)); });
  });
  if (!trans) {
    // Whole panels of row-major B: each depth's row is read contiguously
    // (prefetch-friendly) and its NR-float pieces go to the panels as vectors.
    Value* n_whole = b.CreateSub(p.n, b.CreateSRem(p.n, b.getInt64(nr)));
    gemm_for(b, b.getInt64(0), p.kc, 1, "k", [&](Value* k) {
      Value* src_row = b.CreateInBoundsGEP(f32, p.src, b.CreateAdd(b.CreateMul(b.CreateAdd(p.k0, k), p.ld), p.r0));
      Value* dst_row = b.CreateInBoundsGEP(f32, p.dst, b.CreateMul(k, b.getInt64(nr)));
      std::vector<GemmWalker> walk{{src_row, b.getInt64(nr)}, {dst_row, b.CreateMul(p.kc, b.getInt64(nr))}};
      gemm_for_walk(b, b.getInt64(0), n_whole, s.nr(), "j", walk, [&](Value*, const std::vector<Value*>& at) {
        Value *src = at[0], *out = at[1];
        for (int v = 0; v < s.nr_vecs; ++v) {
          uint64_t off = static_cast<uint64_t>(v * s.lanes);
          Value* x = b.CreateAlignedLoad(vec, b.CreateConstInBoundsGEP1_64(f32, src, off), llvm::Align(4));
          b.CreateAlignedStore(x, b.CreateConstInBoundsGEP1_64(f32, out, off), llvm::Align(4));
        }
      });
    });
  }
  b.CreateRetVoid();
  return p.f;
}

}  // namespace kiln::codegen
