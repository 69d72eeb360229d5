-- AlterEnum
ALTER TYPE "model_artifact_kind" ADD VALUE 'multiparty_aggregate';

-- AlterEnum
ALTER TYPE "round_status" ADD VALUE 'switching' AFTER 'aggregating';

-- AlterTable
ALTER TABLE "model_version" ADD COLUMN     "key_epoch" INTEGER;

-- AlterTable
ALTER TABLE "round" ADD COLUMN     "key_epoch" INTEGER,
ADD COLUMN     "redone" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "sum_c0_sha256" TEXT,
ADD COLUMN     "sum_c1_sha256" TEXT;

-- AlterTable
ALTER TABLE "update_receipt" ADD COLUMN     "contribution" JSONB;

-- CreateTable
CREATE TABLE "key_epoch" (
    "id" TEXT NOT NULL,
    "study_id" TEXT NOT NULL,
    "number" INTEGER NOT NULL,
    "members" TEXT[],
    "status" TEXT NOT NULL DEFAULT 'open',
    "reason" TEXT NOT NULL,
    "opened_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "closed_at" TIMESTAMP(3),
    "closed_reason" TEXT,
    "collective_key" BYTEA,

    CONSTRAINT "key_epoch_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "key_share" (
    "epoch_id" TEXT NOT NULL,
    "site_id" TEXT NOT NULL,
    "statement_json" TEXT NOT NULL,
    "signature" TEXT NOT NULL,
    "certificate_pem" TEXT NOT NULL,
    "share" BYTEA NOT NULL,
    "share_sha256" TEXT NOT NULL,
    "received_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "envelopes" JSONB,
    "envelopes_at" TIMESTAMP(3),

    CONSTRAINT "key_share_pkey" PRIMARY KEY ("epoch_id","site_id")
);

-- CreateTable
CREATE TABLE "key_switch_share" (
    "round_id" TEXT NOT NULL,
    "site_id" TEXT NOT NULL,
    "epoch" INTEGER NOT NULL,
    "sum_sha256" TEXT NOT NULL,
    "share_sha256" TEXT NOT NULL,
    "size_bytes" INTEGER NOT NULL,
    "received_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "key_switch_share_pkey" PRIMARY KEY ("round_id","site_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "key_epoch_study_id_number_key" ON "key_epoch"("study_id", "number");

-- AddForeignKey
ALTER TABLE "key_epoch" ADD CONSTRAINT "key_epoch_study_id_fkey" FOREIGN KEY ("study_id") REFERENCES "study"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "key_share" ADD CONSTRAINT "key_share_epoch_id_fkey" FOREIGN KEY ("epoch_id") REFERENCES "key_epoch"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "key_switch_share" ADD CONSTRAINT "key_switch_share_round_id_fkey" FOREIGN KEY ("round_id") REFERENCES "round"("id") ON DELETE CASCADE ON UPDATE CASCADE;
