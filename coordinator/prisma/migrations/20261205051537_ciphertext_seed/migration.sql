-- CreateTable
CREATE TABLE "ciphertext_seed" (
    "key_id" TEXT NOT NULL,
    "digest" BYTEA NOT NULL,
    "receipt_id" TEXT NOT NULL,

    CONSTRAINT "ciphertext_seed_pkey" PRIMARY KEY ("key_id","digest")
);
