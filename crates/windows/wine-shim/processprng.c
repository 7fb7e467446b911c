#include <windows.h>
typedef BOOLEAN(WINAPI *gen_random_fn)(PVOID, ULONG);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    static gen_random_fn gen;
    if (!gen) gen = (gen_random_fn)GetProcAddress(LoadLibraryA("advapi32.dll"), "SystemFunction036");
    if (!gen) return FALSE;
    while (len) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!gen(data, chunk)) return FALSE;
        data += chunk; len -= chunk;
    }
    return TRUE;
}
