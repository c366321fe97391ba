// Microbenchmark: the short-block fp32 kernel (akv_gemm_f32_rows) against OpenBLAS sgemm for one
// [m rows] x [n, k]^T product on one thread (docs/bench/decode-short-block.txt). Build and run:
//   clang -O3 -mavx2 -mfma -mf16c -ffp-contract=fast -ISources/CKernels/include \
//     tools/bench/short_block_kernel.c Sources/CKernels/gemm_f32.c -lopenblas -o /tmp/short_block_kernel
//   for m in 1 4 13 39 64; do OPENBLAS_NUM_THREADS=1 /tmp/short_block_kernel $m 1536 576; done
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <cblas.h>
#include "akv_gemm_f32.h"
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  if(argc<4){fprintf(stderr,"usage: %s M N K (rows, output features, inner size; K a multiple of 8)\n",argv[0]);return 2;}
  int m=atoi(argv[1]), n=atoi(argv[2]), k=atoi(argv[3]);
  float*a=malloc(4L*m*k),*w=malloc(4L*n*k),*c1=malloc(4L*m*n),*c2=malloc(4L*m*n);
  for(long i=0;i<(long)m*k;i++)a[i]=rand()/(float)RAND_MAX-0.5f;
  for(long i=0;i<(long)n*k;i++)w[i]=rand()/(float)RAND_MAX-0.5f;
  double b1=1e9,b2=1e9;
  for(int t=0;t<7;t++){
    double t0=now(); for(int r=0;r<20;r++) cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,m,n,k,1,a,k,w,k,0,c1,n); double d=(now()-t0)/20; if(d<b1)b1=d;
    t0=now(); for(int r=0;r<20;r++) akv_gemm_f32_rows(a,m,k,k,w,k,0,n,c2,n,0); d=(now()-t0)/20; if(d<b2)b2=d;
  }
  double md=0; for(long i=0;i<(long)m*n;i++){double e=c1[i]-c2[i]; if(e<0)e=-e; if(e>md)md=e;}
  double macs=(double)m*n*k;
  printf("m %d n %d k %d: sgemm %.1f us (%.1f GMAC/s)  rows %.1f us (%.1f GMAC/s)  x%.2f  maxdiff %.2g\n",m,n,k,b1*1e6,macs/b1/1e9,b2*1e6,macs/b2/1e9,b1/b2,md);
}
