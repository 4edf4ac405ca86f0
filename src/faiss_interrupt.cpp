// FAISS's interrupt callback (faiss/impl/AuxIndexStructures.h of the bundled FAISS), which its C
// API does not expose. FAISS asks it, every so often, inside training (k-means iterations),
// HNSW adds and IVF scans; when it answers true, FAISS throws "computation interrupted" and the
// C call returns an error. The answer is vekter's (`src/interrupt.rs`): true only on a thread
// whose long work was interrupted by `sqlite3_interrupt`.
//
// The class is declared exactly as FAISS declares it (one pure virtual method and a virtual
// destructor: the layout its callers rely on).

#include <cstddef>
#include <memory>
#include <mutex>

namespace faiss {
struct InterruptCallback {
    virtual bool want_interrupt() = 0;
    virtual ~InterruptCallback() {}

    static std::mutex lock;
    static std::unique_ptr<InterruptCallback> instance;
    static void clear_instance();
    static void check();
    static bool is_interrupted();
    static size_t get_period_hint(size_t flops);
};
} // namespace faiss

namespace {
struct VekterInterrupt final : faiss::InterruptCallback {
    explicit VekterInterrupt(bool (*want)(void)) : want(want) {}
    bool want_interrupt() override { return want(); }
    bool (*want)(void);
};
} // namespace

// Install the callback (once, before any long FAISS call: FAISS picks how often to ask when a
// call starts, and never asks when no callback is installed). `want` is passed as a pointer,
// not found by name: several vekter libraries can be loaded in one process (the SIMD builds),
// and a name could resolve to another one's function.
extern "C" void vekter_faiss_install_interrupt(bool (*want)(void)) {
    std::lock_guard<std::mutex> guard(faiss::InterruptCallback::lock);
    faiss::InterruptCallback::instance.reset(new VekterInterrupt(want));
}
